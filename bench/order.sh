#!/usr/bin/env bash
# Peak memory of dask-rs's graph order beside dask.order's on the same
# graphs (scalable shapes and every graph of Dask's own test_order.py),
# printed as a markdown table (BENCHMARKS.md). Not part of the tests.
#   bench/order.sh           the shapes at full size (about a minute)
#   bench/order.sh --quick   a quarter of the sizes
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${DASK_BENCH_VENV:-target/dask-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# dask.order itself; pytest and numpy to run Dask's test_order.py.
if ! "$venv/bin/python" -c "import dask, pytest, numpy" 2>/dev/null; then
  "$venv/bin/pip" install -q "dask[distributed]" pytest numpy
fi
cargo build --release -q -p dask-bench --bin order_pressure
exec "$venv/bin/python" bench/order_pressure.py target/release/order_pressure "$@"
