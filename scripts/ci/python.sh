#!/usr/bin/env bash
# The Python package (sdk-py/), from a fresh machine with Rust and Python 3.9+:
# a venv with maturin, pytest, numpy, pandas, dask and cloudpickle from PyPI,
# `pip install ./sdk-py` (builds the extension), the programs the tests start
# or call (dask-scheduler, dask-worker, dask, libdask, the JS SDK's wasm), then
# pytest against real processes (sdk-py/tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
venv="$(cd "$target_dir" && pwd)/py-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install maturin pytest numpy pandas "dask[array,dataframe,bag,distributed]" cloudpickle
# What a user types; pip builds the wheel with maturin (the same cargo target
# directory as everything else, so a second run rebuilds nothing).
"${pip[@]}" install --force-reinstall --no-deps ./sdk-py
cargo build --locked -q -p dask-scheduler -p dask-worker -p dask-cluster --bins
cargo build --locked -q -p dask-sdk-c
if command -v node >/dev/null 2>&1; then
  (cd sdk-js && node scripts/build.mjs)
fi
bin="$(cd "$target_dir" && pwd)/debug"
# Run from the tests' folder so that `import dask_rs` is the installed package.
cd sdk-py/tests
DASK_BIN_DIR="$bin" DASK_PY_REQUIRE_ALL=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider .
