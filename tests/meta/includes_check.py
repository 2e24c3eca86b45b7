#!/usr/bin/env python3
"""Includes point the way docs/ARCHITECTURE.md draws the modules.

Each module's DEPS in src/NAME/CMakeLists.txt (`agentbox_module(NAME DEPS ...)`) is the drawing in
code: linking already fails for an arrow the wrong way when a symbol is needed, but a header-only
use (an inline function, a struct, a constant) compiles and links anyway. This check reads every
`#include "agentbox/X/..."` in src/NAME and include/agentbox/NAME and fails when X is neither NAME
nor below it. It also keeps the libraries that throw where docs/ARCHITECTURE.md says exceptions
live: toml11 only in config, CLI11 only in cli.

Usage: includes_check.py SOURCE_DIR   (exit 0: clean; 1: one line per violation)
"""
import pathlib
import re
import sys

MODULE = re.compile(r"agentbox_module\((\w+)\s+DEPS([^)]*)\)")
INCLUDE = re.compile(r'^\s*#\s*include\s+[<"]([^>"]+)[>"]', re.M)
# Third-party headers that throw: where each may be included.
CONFINED = {"toml.hpp": {"config"}, "toml11/": {"config"}, "CLI/": {"cli"}}
# System and TLS headers a module must not include: http parses, cred holds credentials;
# neither touches a connection (docs/ARCHITECTURE.md).
KEPT_OUT = {"sys/socket.h": {"http", "cred"}, "netinet/": {"http", "cred"},
            "openssl/ssl.h": {"http", "cred"}, "nghttp2/": {"http", "cred"},
            "openssl/": {"http"}}


def modules(root):
    deps = {}
    for cm in sorted((root / "src").glob("*/CMakeLists.txt")):
        for name, rest in MODULE.findall(cm.read_text()):
            deps.setdefault(name, set()).update(re.findall(r"agentbox::(\w+)", rest))
    return deps


def closure(deps, name):
    seen, todo = set(), [name]
    while todo:
        for d in deps.get(todo.pop(), ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def files_of(root, name):
    for base in (root / "src" / name, root / "include" / "agentbox" / name):
        if base.is_dir():
            yield from sorted(p for p in base.rglob("*") if p.suffix in (".cpp", ".hpp"))


def main():
    root = pathlib.Path(sys.argv[1])
    deps = modules(root)
    if len(deps) < 5:
        print(f"includes: found only {len(deps)} modules under {root}/src: the parse is broken")
        return 1
    bad = []
    owners = {name: name for name in deps}
    owners["cli"] = "cli"
    for name in list(deps) + ["cli"]:
        allowed = {name} | closure(deps, name)
        files = files_of(root, name) if name != "cli" else sorted((root / "cli").glob("*.[ch]pp"))
        for path in files:
            text = path.read_text(errors="replace")
            for m in INCLUDE.finditer(text):
                inc = m.group(1)
                line = text.count("\n", 0, m.start()) + 1
                where = f"{path.relative_to(root)}:{line}"
                if inc.startswith("agentbox/"):
                    target = inc.split("/")[1]
                    if name != "cli" and target in deps and target not in allowed:
                        bad.append(f"{where}: {name} includes {inc}, but {target} is not below "
                                   f"{name} (src/{name}/CMakeLists.txt DEPS)")
                for prefix, kept_out in KEPT_OUT.items():
                    if inc.startswith(prefix) and name in kept_out:
                        bad.append(f"{where}: {name} includes {inc}, which it must not "
                                   f"(docs/ARCHITECTURE.md)")
                for prefix, where_ok in CONFINED.items():
                    if inc.startswith(prefix) and name not in where_ok:
                        bad.append(f"{where}: {inc} (it throws) belongs in {', '.join(where_ok)} "
                                   f"only")
    for b in bad:
        print(b)
    if not bad:
        print(f"includes: {len(deps)} modules and cli follow their DEPS")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
