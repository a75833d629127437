#!/usr/bin/env bash
# Benchmarks dask-rs beside Dask distributed in one run and prints a
# markdown table (paste into BENCHMARKS.md). Not part of the tests.
#   bench/run.sh            full sizes (several minutes, most of it Dask)
#   bench/run.sh --quick    a tenth of the sizes
#   bench/run.sh --no-dask  dask-rs only
#   bench/run.sh --tls      dask-rs over TLS (with auth, as always): beside a plain run, the cost of TLS
#   bench/run.sh --journal  the scheduler keeps a journal (--journal) for every shape (without it, the
#                           table's journal columns still run independent and tree on a journaling cluster)
#   bench/run.sh --no-dask --journal-rounds 6   only the journal's cost: independent and tree, 6 rounds on a
#                           plain and a journaling cluster in turns, with means and ranges
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
venv=${DASK_BENCH_VENV:-target/dask-venv}
if [[ " $* " != *" --no-dask "* ]]; then
  ensure_venv "$venv" "import distributed" "dask[distributed]"
fi
cargo build --release -q -p dask-scheduler -p dask-worker -p dask-bench
exec target/release/dask-bench --python "$venv/bin/python" "$@"
