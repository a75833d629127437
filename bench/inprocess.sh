#!/usr/bin/env bash
# The in-process scheduler's overhead beside Dask's threaded and sync
# schedulers (32,767-task tree, 100,000 independent tasks, no-op tasks),
# then dask-rs alone up to about 10 million tasks (time and memory per
# task). Prints markdown tables (BENCHMARKS.md). Not part of the tests.
#   bench/inprocess.sh            full sizes (a few minutes)
#   bench/inprocess.sh --quick    fewer repeats, up to a million tasks
#   bench/inprocess.sh --no-scale the comparison with Dask only
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
venv=${DASK_BENCH_VENV:-target/dask-venv}
ensure_venv "$venv" "import dask" "dask[distributed]"
cargo build --release -q -p dask-bench --bin inprocess_overhead
exec "$venv/bin/python" bench/inprocess.py target/release/inprocess_overhead "$@"
