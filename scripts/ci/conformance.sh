#!/usr/bin/env bash
# Conformance: runs dask-conformance against every worker dask-rs ships.
# Each run prints one line per case and ends with `N passed, M failed`;
# JUnit reports go to target/conformance/. Extra runner options can be
# given in DASK_CONFORMANCE_ARGS (e.g. "--timeout-scale 2" on a slow host).
# (The broken fixture workers are run by `cargo test -p dask-conformance`.)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --locked -q -p dask-conformance -p dask-worker --bins
target_dir="${CARGO_TARGET_DIR:-target}"
bin="$target_dir/debug"
reports="$target_dir/conformance"
mkdir -p "$reports"
status=0

run_worker() { # NAME COMMAND...  (placeholders: {scheduler} {nthreads} {name})
  local name=$1
  shift
  echo "-- dask-conformance: $name"
  # shellcheck disable=SC2086
  "$bin/dask-conformance" worker --report "$reports/$name.xml" ${DASK_CONFORMANCE_ARGS:-} -- "$@" || status=1
}

run_worker dask-worker "$bin/dask-worker" '{scheduler}' --nthreads '{nthreads}'

# The C SDK's example worker (a worker written in C on libdask).
if [ -f sdk-c/examples/worker.c ]; then
  cargo build --locked -q -p dask-sdk-c
  cc -std=c11 -Wall -Wextra -O1 -Isdk-c/include sdk-c/examples/worker.c "$bin/libdask.a" \
    -lpthread -ldl -lm -o "$reports/c-worker"
  run_worker c-worker "$reports/c-worker" '{scheduler}' '{nthreads}' '{name}'
fi
# The JS worker joins here when sdk-js ships one, e.g.
#   run_worker js-worker node sdk-js/examples/worker.mjs '{scheduler}' '{nthreads}'
exit $status
