"""Write a folder of wheels to install r1pipe on an air-gapped GPU machine.

    python scripts/wheels.py [--out wheels] [--extras demo]      # or: make wheels

The cluster already has CUDA torch, transformers, accelerate and peft (built for its
drivers); everything else r1pipe needs comes from this folder:

    pip install --no-index --find-links wheels/ "r1pipe[demo]"

How: pip resolves r1pipe's full requirement set (`pip install --dry-run --report`, metadata
only), drops those four and what only a GPU build of torch brings (nvidia-*, triton), then
downloads the rest as binary wheels for this interpreter and platform (the cluster's Python
must match: same minor version, manylinux x86_64) and builds r1pipe's own wheel. Needs
network access to the package index; prints the folder's size.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ON_THE_CLUSTER = {"torch", "transformers", "accelerate", "peft"}
GPU_BUILD = re.compile(r"^(nvidia-.*|triton|cuda-.*)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(extras: str) -> list[str]:
    """`name==version` of every package r1pipe[extras] installs, by pip's own resolver."""
    target = f"{REPO}[{extras}]" if extras else str(REPO)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run",
                        "--ignore-installed", "--report", str(report), target], check=True)
        items = json.loads(report.read_text())["install"]
    pins = []
    for item in items:
        name = canonical(item["metadata"]["name"])
        if name == "r1pipe" or name in ON_THE_CLUSTER or GPU_BUILD.match(name):
            continue
        pins.append(f"{name}=={item['metadata']['version']}")
    return sorted(pins)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "wheels")
    parser.add_argument("--extras", default="demo",
                        help="r1pipe extras to include (comma-separated; '' for none)")
    opts = parser.parse_args()
    out = opts.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pins = resolve(opts.extras)
    (out / "requirements.txt").write_text("\n".join(pins) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary=:all:", "--dest", str(out), *pins], check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(out), str(REPO)], check=True)
    wheels = sorted(out.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels)
    print(f"{out}: {len(wheels)} wheels, {size / 2**20:.1f} MiB (without torch, transformers, "
          f"accelerate, peft); install with: pip install --no-index --find-links {out} "
          f"\"r1pipe[{opts.extras}]\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
