#!/usr/bin/env bash
# The Python package (sdk-py/), from a fresh machine with Rust and Python 3.9+:
# a venv with maturin, pytest, numpy, pandas, dask and cloudpickle from PyPI and
# `pip install ./sdk-py` (scripts/python-venv.sh), the programs the tests start
# or call (dask-scheduler, dask-worker, dask, libdask, the JS SDK's wasm), then
# pytest against real processes (sdk-py/tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
python="$(scripts/python-venv.sh)"
cargo build --locked -q -p dask-scheduler -p dask-worker -p dask-cluster --bins
cargo build --locked -q -p dask-sdk-c
if command -v node >/dev/null 2>&1; then
  (cd sdk-js && node scripts/build.mjs)
fi
target_dir="${CARGO_TARGET_DIR:-target}"
bin="$(cd "$target_dir" && pwd)/debug"
# From the tests' folder, so that `import dask_rs` is the installed package.
cd sdk-py/tests
DASK_BIN_DIR="$bin" DASK_PY_REQUIRE_ALL=1 "$python" -m pytest -q -p no:cacheprovider .
