# Builds a one-crate cargo registry for the proxy tests (git index + a .crate to download):
#
#   cargo_registry.py DIR HOST
# DIR/pub/index.git  bare git repository: config.json ({"dl": "https://HOST/cargo/dl"}) and
#                    the index line of `agentboxdemo` 0.1.0 (served by upstream.py at /pub/)
# DIR/cargo/agentboxdemo-0.1.0.crate   the crate (served at /cargo/dl/agentboxdemo/0.1.0/download)
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

DIR, HOST = sys.argv[1], sys.argv[2]
NAME, VERS = "agentboxdemo", "0.1.0"

os.makedirs(os.path.join(DIR, "cargo"), exist_ok=True)
crate = io.BytesIO()
with tarfile.open(fileobj=crate, mode="w:gz") as tar:
    for path, text in (
        ("Cargo.toml", f'[package]\nname = "{NAME}"\nversion = "{VERS}"\nedition = "2018"\n'),
        ("src/lib.rs", 'pub fn greeting() -> &\'static str {\n    "hello from the registry"\n}\n'),
    ):
        data = text.encode()
        info = tarfile.TarInfo(f"{NAME}-{VERS}/{path}")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
blob = crate.getvalue()
with open(os.path.join(DIR, "cargo", f"{NAME}-{VERS}.crate"), "wb") as f:
    f.write(blob)

work = os.path.join(DIR, "index-work")
os.makedirs(os.path.join(work, NAME[:2], NAME[2:4]), exist_ok=True)
with open(os.path.join(work, "config.json"), "w") as f:
    json.dump({"dl": f"https://{HOST}/cargo/dl"}, f)
with open(os.path.join(work, NAME[:2], NAME[2:4], NAME), "w") as f:
    f.write(json.dumps({"name": NAME, "vers": VERS, "deps": [], "features": {},
                        "cksum": hashlib.sha256(blob).hexdigest(), "yanked": False}) + "\n")


def git(*args, cwd=work):
    subprocess.run(["git", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL)


git("init", "-q", "-b", "master")
git("add", "-A")
git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "index")
git("clone", "-q", "--bare", work, os.path.join(DIR, "pub", "index.git"), cwd=DIR)
git("update-server-info", cwd=os.path.join(DIR, "pub", "index.git"))
