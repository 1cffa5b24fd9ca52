#!/usr/bin/env bash
# The GPU checks of issue 4 as one prepared run for a device machine (about 8 minutes on
# an H100): bitwise identity, synchronisations and the lesson on the GPU, then the overhead
# of capture / default / every-pass on the four models. Needs only torch there (gradscope
# is imported from this checkout). Output goes to stdout and, when set, to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
log="${OUT:-/tmp}/gpu_session.txt"
{
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    python bench/gpu_check.py
    python bench/bench_overhead.py --device cuda --repeats 3 --steps 20
} 2>&1 | tee "$log"
