"""How far the demo's test UAR moves over seeds and over the CPU's kernel paths.

Float sums in another kernel order train another model, so the figure `make demo` prints on an
AMD Zen 3 (AVX2 only) can differ from the one on an Intel Xeon with AVX-512 and AMX. This script
runs `peft-ser demo` (the committed config, one fresh output folder per run) for each seed under
each kernel path, simulated on one machine through the environment variables PyTorch, oneDNN
and MKL read at start-up:

* ``native``: whatever this CPU offers (AVX-512/AMX on the machine the README was measured on);
* ``avx2``: ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``,
  a Zen 3 or any AVX2-only CPU;
* ``default``: ``ATEN_CPU_CAPABILITY=default`` (PyTorch's non-vectorised kernels) with oneDNN
  and MKL held to AVX2.

It prints one line per run and then the range of test UAR over all runs. From the repository
root (about 1.5-2 minutes a run on 2 cores; 15 runs by default):

    .venv/bin/python bench/demo_spread.py --seeds 0,1,2,3,4 --paths native,avx2,default
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PATHS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    },
    "default": {
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    },
}
"""Each simulated kernel path and the environment that selects it."""

SCORE = re.compile(r"^(dev|test) UAR\s+([0-9.]+)", re.MULTILINE)


def run_demo(seed: int, path: str, out: Path) -> dict[str, float]:
    """One `peft-ser demo` in a fresh process under ``path``'s environment; its dev and test UAR."""
    env = {**os.environ, **PATHS[path]}
    command = [sys.executable, "-m", "peft_ser.cli", "demo", "--seed", str(seed)]
    command += ["--output-dir", str(out)]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"seed {seed} on {path} failed:\n{finished.stderr[-2000:]}")
    return {split: float(value) for split, value in SCORE.findall(finished.stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    parser.add_argument("--paths", default="native,avx2,default", help=", ".join(PATHS))
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    args = parser.parse_args()
    paths = args.paths.split(",")
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown kernel path(s) {unknown}; choose from {list(PATHS)}")
    root = args.out or Path(tempfile.mkdtemp(prefix="demo-spread-"))
    tests = []
    print(f"{'path':<9}{'seed':>5}{'dev UAR':>9}{'test UAR':>10}", flush=True)
    for path in paths:
        for seed in (int(s) for s in args.seeds.split(",")):
            scores = run_demo(seed, path, root / f"{path}-seed{seed}")
            tests.append(scores["test"])
            print(f"{path:<9}{seed:>5}{scores['dev']:>9.3f}{scores['test']:>10.3f}", flush=True)
    print(f"test UAR over {len(tests)} runs: {min(tests):.3f}-{max(tests):.3f}")


if __name__ == "__main__":
    main()
