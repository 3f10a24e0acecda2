#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one bounded go: the GPU-only tests (tests/test_gpu.py),
# then the GPU benchmark with its defaults (bench/bench_gpu.py), each log teed into OUTDIR.
#
#   bench/gpu_check.sh OUTDIR
#
# Needs the project's dependencies with a CUDA build of torch (pip install -e ".[test]");
# PYTHON picks the interpreter (default python3). The tests are cut off after 150 s and the
# benchmark after 300 s (its own goal: under 5 minutes), so the whole stays under 8 minutes.
# The exit status is non-zero when either failed or ran out of time; both always run.
set -euo pipefail
if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
out=$1
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}

{
    date -u
    nvidia-smi || echo "nvidia-smi: not available"
    "$python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda,
"available", torch.cuda.is_available())'
} 2>&1 | tee "$out/environment.log"

status=0
timeout 150 "$python" -m pytest -q -rs tests/test_gpu.py 2>&1 | tee "$out/test_gpu.log" || status=1
timeout 300 "$python" bench/bench_gpu.py 2>&1 | tee "$out/bench_gpu.log" || status=1
echo "gpu_check: exit status $status (logs in $out)" | tee -a "$out/environment.log"
exit "$status"
