#!/usr/bin/env bash
# GPU check: one command, at most ~8 minutes on one GPU. Run from the repository root on a machine
# whose Python already has jax with CUDA (pip install -e ".[test,cuda,bench]" where a registry is
# reachable; the lent device machines here reach none, so bring the wheels).
#   bash benchmarks/gpu_check.sh [OUT_DIR]      (default: benchmarks/results)
# 1. the GPU-relevant tests in float64 (solvers, driver, sweeps and sharding, every model's solve
#    against theory) on the GPU backend;
# 2. every model solved in float32 on the GPU against its closed form at float32 tolerances;
# 3. the benchmark (steps, certified, solvers, a 64-point sweep) with torch on the same GPU;
# and writes every result under OUT_DIR.
# The lent GPU machines' image has jax (CUDA), optax, torch, matplotlib and pytest-xdist (ufm's
# dependencies and the check's) under `python3`; there may be no `python`. PYTHON=... picks another
# interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/results}"
mkdir -p "$OUT"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONUNBUFFERED=1 JAX_PLATFORMS=cuda,cpu UFM_NO_CACHE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
status=0
timeout 200 "$PY" -m pytest -q -p no:cacheprovider -n 0 -m "not slow" \
    tests/test_driver_speed.py tests/test_solvers.py tests/test_solver_grid.py tests/test_compile_guard.py \
    tests/test_verify_plain.py tests/test_spherical.py tests/test_problems.py 2>&1 | tail -5 | tee "$OUT/gpu_tests_float64.txt" || status=1
timeout 60 "$PY" benchmarks/float32_check.py 2>&1 | tee "$OUT/gpu_float32.txt" || status=1
timeout 200 "$PY" benchmarks/bench.py --rounds 3 --sweep-rounds 1 --sweep-points 64 --torch-device cuda --out "$OUT" 2>&1 | tail -40 || status=1
exit $status
