#!/usr/bin/env bash
# dask_rs (2 Python workers) beside Dask distributed's LocalCluster(n_workers=2,
# threads_per_worker=1) on dask.array, dask.dataframe and 20,000 tiny tasks, in
# one run; prints a markdown table for BENCHMARKS.md. Not part of the tests.
#   bench/python.sh [--quick] [--only array|dataframe|tiny]
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
venv="$(cd "$target_dir" && pwd)/py-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip --disable-pip-version-check -q install numpy pandas "dask[array,dataframe,distributed]" cloudpickle
"$venv/bin/python" -m pip --disable-pip-version-check -q install ./sdk-py
exec "$venv/bin/python" bench/python_bench.py "$@"
