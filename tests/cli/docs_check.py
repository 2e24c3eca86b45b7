#!/usr/bin/env python3
"""The man pages, CONFIG.md and the completions name every flag and key the code has.

Flags come from the CLI definitions themselves (`agentbox completion words`), configuration keys
from the schema tables in src/config/load.cpp; a flag or key added without its documentation
fails here. Usage: docs_check.py AGENTBOX SOURCE_DIR COMPLETIONS_DIR
"""
import re
import shutil
import subprocess
import sys

agentbox, src, comp = sys.argv[1:4]
problems = []


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


man1 = read(f"{src}/man/agentbox.1")
man5 = read(f"{src}/man/agentbox.toml.5")
config_md = read(f"{src}/docs/CONFIG.md")
words = subprocess.run([agentbox, "completion", "words"], check=True, capture_output=True,
                       text=True).stdout.split("\n")
scripts = {name: read(f"{comp}/{name}") for name in ("agentbox", "_agentbox", "agentbox.fish")}

verbs = set()
for line in filter(None, words):
    verb, flag, _ = line.split(" ")
    verbs.add(verb)
    if flag in ("--help", "-h"):
        continue
    if flag.replace("-", "\\-") not in man1:
        problems.append(f"man/agentbox.1 does not mention `{verb} {flag}`")
    bare = flag.lstrip("-")
    if flag not in scripts["agentbox"] or bare not in scripts["agentbox.fish"] \
            or flag not in scripts["_agentbox"]:
        problems.append(f"a completion script lacks `{verb} {flag}`")
for verb in sorted(verbs):
    if f".B {verb}" not in man1:
        problems.append(f"man/agentbox.1 has no entry for the verb `{verb}`")

source = read(f"{src}/src/config/load.cpp")
# Schema entries: `{"key", handler}` or a helper such as `grant_only("key", ...)`.
keys = set(re.findall(r'\{"([a-z_]+)",', source)) | set(re.findall(r'_only\(\s*"([a-z_]+)"', source))
keys |= set(re.findall(r'^\s*"([a-z_]+)",\s*$', source, re.M))
for key in sorted(keys):
    if not re.search(rf"(\.B |\\fB|\[)(\[?network\.)?{key}\b", man5):
        problems.append(f"man/agentbox.toml.5 does not document the key `{key}`")
    if not re.search(rf"`[^`\n]*\b{key}\b[^`\n]*`", config_md):
        problems.append(f"docs/CONFIG.md does not document the key `{key}`")

if subprocess.run(["bash", "-n", f"{comp}/agentbox"]).returncode != 0:
    problems.append("the bash completion is not valid bash")
for shell, name in (("zsh", "_agentbox"), ("fish", "agentbox.fish")):
    if shutil.which(shell):
        if subprocess.run([shell, "-n", f"{comp}/{name}"]).returncode != 0:
            problems.append(f"the {shell} completion is not valid {shell}")
    else:
        print(f"not applicable: {shell} is not installed, its completion's syntax is unchecked")

for p in problems:
    print(p)
print(f"{len(verbs)} verbs, {sum(1 for w in words if w)} flags, {len(keys)} keys checked;"
      f" {len(problems)} problems")
sys.exit(1 if problems else 0)
