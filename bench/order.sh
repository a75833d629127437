#!/usr/bin/env bash
# Peak memory of dask-rs's graph order beside dask.order's on the same
# graphs (scalable shapes and every graph of Dask's own test_order.py),
# printed as a markdown table (BENCHMARKS.md). Not part of the tests.
#   bench/order.sh           the shapes at full size (about a minute)
#   bench/order.sh --quick   a quarter of the sizes
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
venv=${DASK_BENCH_VENV:-target/dask-venv}
# dask.order itself; pytest and numpy to run Dask's test_order.py.
ensure_venv "$venv" "import dask, pytest, numpy" "dask[distributed]" pytest numpy
cargo build --release -q -p dask-bench --bin order_pressure
exec "$venv/bin/python" bench/order_pressure.py target/release/order_pressure "$@"
