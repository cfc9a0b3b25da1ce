#!/usr/bin/env bash
# The one prepared GPU check (issues 6 and 13), for a machine with a CUDA device; about 11
# minutes at most. From the repository root:
#
#     bash benchmarks/gpu_check.sh 2>&1 | tee gpu_check.log            # every section
#     bash benchmarks/gpu_check.sh training 2>&1 | tee gpu_check.log   # only the named ones
#
# Sections (arguments: any of tests, grid, training; default all three):
# 1. the device (nvidia-smi -L) and the torch / pyro versions (always);
# 2. tests: every CUDA test (marked `cuda`), at most 150 s;
# 3. grid: the issue-6 GPU grid (python3 -m benchmarks.bench_block_tridiag --gpu-grid): a
#    Markdown table, cheap cells first, one row printed as each cell finishes; each method gets a
#    1 s timing budget per cell, no new cell starts after the time left minus 60 s, and `timeout`
#    stops it at GRID_S seconds (default 330) whatever happens (the rows printed so far stand);
# 4. training: the issue-13 training throughput on the GPU (python3 -m benchmarks.bench_training
#    --device cuda): sequences per second of a study cell's Lightning step at the default budget
#    and at --budget 8, reference and fast path, where the time goes, and the training hours of
#    the default study at --budget 8; stopped at TRAINING_S seconds (default 180).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
GRID_S=${GRID_S:-330}
TRAINING_S=${TRAINING_S:-180}
sections=${*:-tests grid training}

echo "== device"
nvidia-smi -L
python3 -c "import torch, pyro; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'pyro', pyro.__version__, 'cuda available', torch.cuda.is_available())"

for section in $sections; do
    case $section in
    tests)
        echo "== CUDA tests"
        timeout 150 python3 -m pytest -q -p no:cacheprovider -m cuda tests
        echo "pytest exit status: $?"
        ;;
    grid)
        echo "== GPU grid"
        timeout --signal=INT --kill-after=10 "$GRID_S" \
            python3 -m benchmarks.bench_block_tridiag --gpu-grid --time-limit "$((GRID_S - 60))"
        echo "benchmark exit status: $? (124: stopped by timeout)"
        ;;
    training)
        echo "== training throughput"
        timeout --signal=INT --kill-after=10 "$TRAINING_S" \
            python3 -m benchmarks.bench_training --device cuda --threads 1 --rounds 3
        echo "benchmark exit status: $? (124: stopped by timeout)"
        ;;
    *)
        echo "unknown section $section (expected tests, grid or training)" >&2
        exit 2
        ;;
    esac
done
