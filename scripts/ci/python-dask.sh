#!/usr/bin/env bash
# dask-rs beside real Python Dask (from PyPI, in a virtualenv this script
# makes): each side, reaching the other, says what it reached in one line
# (scripts/ci/python_dask_check.py has the cases).
#
#   DASK_PYTHON_VENV=DIR scripts/ci/python-dask.sh   # reuse a virtualenv
set -euo pipefail
cd "$(dirname "$0")/../.."
# Credentials of this step alone: a scheduler it starts creates them in
# DASK_RS_HOME, and its clients and workers find them there with no flag,
# as on a user's machine (not the user's own ~/.dask-rs).
export DASK_RS_HOME="${DASK_RS_HOME:-$(mktemp -d)}"
unset DASK_CREDENTIALS
target_dir=${CARGO_TARGET_DIR:-target}
venv=${DASK_PYTHON_VENV:-$target_dir/python-dask-venv}
# Pinned: the reverse direction depends on how this version reads replies.
version=2026.8.0
# pytest and numpy: the order check runs Dask's own test_order.py.
. scripts/venv.sh
ensure_venv "$venv" "import distributed, pytest, numpy, sys; sys.exit(distributed.__version__ != '$version')" \
  "dask[distributed]==$version" pytest numpy
cargo build --locked -q -p dask-scheduler -p dask-worker -p dask-cluster --bins
bin=$(cd "$target_dir/debug" && pwd)
"$venv/bin/python" scripts/ci/python_dask_check.py "$bin"
# dask-rs's graph order never holds more results at once than dask.order
# on the same graphs (bench/order_pressure.py: shapes at a quarter of
# their size and every graph of Dask's test_order.py; exits 1 otherwise).
cargo build --locked -q -p dask-bench --bin order_pressure
"$venv/bin/python" bench/order_pressure.py "$bin/order_pressure" --quick >/dev/null
echo "python-dask: dask-rs's order holds no more than dask.order's on any graph"
