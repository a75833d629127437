#!/usr/bin/env bash
# Makes (once) the venv of the Python package's tests and benchmark in the
# cargo target directory, installs its PyPI packages and `pip install ./sdk-py`
# (maturin builds the extension), and prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
venv="$(cd "$target_dir" && pwd)/py-venv"
. scripts/venv.sh
ensure_venv "$venv" "import maturin, pytest, numpy, pandas, dask.array, dask.dataframe, dask.bag, distributed, cloudpickle" \
  maturin pytest numpy pandas "dask[array,dataframe,bag,distributed]" cloudpickle
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
# What a user types; pip builds the wheel with maturin in the workspace's
# target directory, so a second run rebuilds nothing.
"${pip[@]}" install --force-reinstall --no-deps ./sdk-py >&2
echo "$venv/bin/python"
