#!/usr/bin/env python3
"""Command-line mistakes get agentbox's own one-line error, the nearest word, and status 125.

Usage: messages_check.py AGENTBOX
"""
import subprocess
import sys

agentbox = sys.argv[1]
CASES = [
    # argv, exit status, lines stderr must contain
    (["rnu", "--", "true"], 125,
     ["agentbox: error: unknown command `rnu`", "hint: did you mean `agentbox run`?"]),
    (["run", "--alow", "x.example", "--", "true"], 125,
     ["agentbox: error: run: unknown option `--alow`", "hint: did you mean `--allow`?"]),
    (["run", "--bogus", "--", "true"], 125,
     ["agentbox: error: run: unknown option `--bogus`",
      "hint: `agentbox help run` lists its options"]),
    (["explain", "--list-profile"], 125,
     ["agentbox: error: explain: unknown option `--list-profile`",
      "hint: did you mean `--list-profiles`?"]),
    (["run", "--timeout"], 125, ["agentbox: error: run: --timeout needs a value"]),
    (["state", "rm"], 125, ["agentbox: error: state rm: name one profile or pass --all",
                            "hint: agentbox state rm PROFILE | agentbox state rm --all"]),
    (["state", "rm", "../x"], 125, ["agentbox: error: state rm: `../x` is not a profile name"]),
    (["run"], 125, ["agentbox: error: run: no command given",
                    "hint: agentbox run [OPTIONS] -- CMD ARGS..."]),
    ([], 125, ["agentbox: error: no command given"]),
    (["help", "nope"], 125, ["agentbox: error: unknown command `nope`"]),
    (["run", "--allow", "https://x.example/path", "--", "true"], 125,
     ["agentbox: error: --allow: bad egress rule `https://x.example/path`: a rule names a host, "
      "not a URL: drop the scheme and path, `x.example`"]),
    (["stop", "../x"], 125,
     ["agentbox: error: stop: `../x` is not a session id",
      "hint: a session id is 6 hex digits (or the full id); `agentbox ps` lists them"]),
    (["kill"], 125, ["agentbox: error: kill: "]),
    (["run", "--memory", "4096", "--", "true"], 125,
     ["agentbox: error: --memory: invalid size `4096`"]),
]

problems = 0
for argv, status, expected in CASES:
    r = subprocess.run([agentbox, *argv], capture_output=True, text=True, timeout=30)
    for line in expected:
        if line not in r.stderr:
            print(f"agentbox {' '.join(argv)}: stderr lacks {line!r}; it was:\n{r.stderr}")
            problems += 1
    if r.returncode != status:
        print(f"agentbox {' '.join(argv)}: status {r.returncode}, expected {status}")
        problems += 1
    if "terminate called" in r.stderr or "CLI11" in r.stderr or "not expected" in r.stderr:
        print(f"agentbox {' '.join(argv)}: CLI11's own words leaked: {r.stderr}")
        problems += 1

for argv in (["help"], ["help", "run"], ["run", "--help"]):
    r = subprocess.run([agentbox, *argv], capture_output=True, text=True, timeout=30)
    if r.returncode != 0 or "Usage:" not in r.stdout:
        print(f"agentbox {' '.join(argv)}: status {r.returncode}, stdout {r.stdout!r}")
        problems += 1
help_run = subprocess.run([agentbox, "help", "run"], capture_output=True, text=True).stdout
if "--allow" not in help_run:
    print("agentbox help run does not show run's options")
    problems += 1

print(f"{len(CASES) + 3} command lines checked; {problems} problems")
sys.exit(1 if problems else 0)
