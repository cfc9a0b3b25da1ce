#!/usr/bin/env bash
# The one prepared GPU check (issue 6, item 4), for a machine with a CUDA device; about 8
# minutes at most. From the repository root:
#
#     bash benchmarks/gpu_check.sh 2>&1 | tee gpu_check.log
#
# 1. the device (nvidia-smi -L) and the torch / pyro versions;
# 2. every CUDA test (marked `cuda`), at most 150 s;
# 3. the issue's GPU grid (python3 -m benchmarks.bench_block_tridiag --gpu-grid): a Markdown
#    table, cheap cells first, one row printed as each cell finishes; each method gets a 1 s
#    timing budget per cell, no new cell starts after the time left minus 60 s, and `timeout`
#    stops the run at the 8-minute mark whatever happens (the rows printed so far stand).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
TOTAL_S=${TOTAL_S:-480}
deadline=$((SECONDS + TOTAL_S))

echo "== device"
nvidia-smi -L
python3 -c "import torch, pyro; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'pyro', pyro.__version__, 'cuda available', torch.cuda.is_available())"

echo "== CUDA tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider -m cuda tests
echo "pytest exit status: $?"

echo "== GPU grid"
left=$((deadline - SECONDS))
timeout --signal=INT --kill-after=10 "$((left - 10))" \
    python3 -m benchmarks.bench_block_tridiag --gpu-grid --time-limit "$((left - 70))"
echo "benchmark exit status: $? (124: stopped by timeout)"
