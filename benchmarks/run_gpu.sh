#!/usr/bin/env bash
# The checks to run on a GPU machine that already has JAX (CUDA), PyTorch (CUDA), pytest and
# pytest-xdist: the test suite, the two benchmarks (fnnet on the GPU vs PyTorch eager on the CPU
# and on CUDA), the book's weights at JAX's default (TF32) and at full float32 matmul precision,
# the DeepConvNet record (20 epochs, the last 4 at lr/10) and the README's main job.
#
#     FNNET_DATA_DIR=... FNNET_BOOK_WEIGHTS_DIR=... bash benchmarks/run_gpu.sh [OUT_DIR]
#
# Each step has its own time limit, so one slow step cannot eat the others' time. Logs go to
# OUT_DIR (default runs/gpu), six files; the runs' own outputs go under /tmp.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
step() { echo; echo "=== $* ($(date +%T))"; }

step environment
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, torch; print('jax', jax.__version__, jax.devices()); \
print('torch', torch.__version__, torch.cuda.get_device_name())"

step "tests (${PYTEST_LIMIT:=240} s limit)"
timeout "$PYTEST_LIMIT" python3 -m pytest -m "slow or not slow" -n 8 -q --durations=5 -W ignore \
  2>&1 | tee "$out/pytest.log" | tail -45

step bench_conv
timeout 150 python3 benchmarks/bench_conv.py --steps 30 --numpy-steps 2 --threads "$(nproc)" --torch-cuda \
  --out /tmp/bench_conv 2>&1 | tee "$out/bench_conv.log"

step "book weights: JAX's default matmul precision, then full float32"
(timeout 60 python3 scripts/ch07_book_weights.py --out /tmp/book_default
 JAX_DEFAULT_MATMUL_PRECISION=highest timeout 60 python3 scripts/ch07_book_weights.py --out /tmp/book_highest) \
  2>&1 | tee "$out/book_weights.log"

step bench_mlp
timeout 120 python3 benchmarks/bench_mlp.py --epochs 3 --torch-steps 100 --torch-cuda 2>&1 \
  | tee "$out/bench_mlp.log"

step "DeepConvNet record: 20 epochs, the last 4 at lr/10"
timeout 180 python3 -m fnnet.cli train --model deep_convnet --optimizer adam --epochs 20 \
  --schedule step --decay-epochs 4 --out /tmp/deep_decay --overwrite 2>&1 | tr '\r' '\n' | grep -v "it/s" | tee "$out/deep_convnet.log" | tail -25

step "main job: fnnet train"
timeout 90 python3 -m fnnet.cli train --out /tmp/fnnet-main --overwrite 2>&1 | tr '\r' '\n' | grep -v "it/s" \
  | tee "$out/train.log" | tail -4
