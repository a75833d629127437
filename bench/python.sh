#!/usr/bin/env bash
# dask_rs (2 Python workers) beside Dask distributed's LocalCluster(n_workers=2,
# threads_per_worker=1) on dask.array, dask.dataframe and 20,000 tiny tasks, in
# one run; prints a markdown table for BENCHMARKS.md. Not part of the tests.
#   bench/python.sh [--quick] [--only array|dataframe|tiny]
set -euo pipefail
cd "$(dirname "$0")/.."
python="$(scripts/python-venv.sh)"
exec "$python" bench/python_bench.py "$@"
