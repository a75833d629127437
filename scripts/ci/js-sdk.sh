#!/usr/bin/env bash
# The JS SDK (sdk-js/), from a fresh machine with Rust and Node: the wasm
# target, the binaries its tests start (dask-scheduler, dask-worker, dask,
# dask-conformance), the wasm module, `npm test` in sdk-js (node --test),
# then dask-conformance against the JS worker (examples/worker.mjs), also
# with authentication over TLS.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Credentials of this step alone: a scheduler it starts creates them in
# DASK_RS_HOME, and its clients and workers find them there with no flag,
# as on a user's machine (not the user's own ~/.dask-rs).
export DASK_RS_HOME="${DASK_RS_HOME:-$(mktemp -d)}"
unset DASK_CREDENTIALS
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown
cargo build --locked -q -p dask-scheduler -p dask-worker -p dask-cluster -p dask-conformance --bins
target_dir="${CARGO_TARGET_DIR:-target}"
bin="$(cd "$target_dir" && pwd)/debug"
(
  cd sdk-js
  # Only typescript (pinned in package-lock.json), for the types test.
  npm ci --no-audit --no-fund --loglevel=error
  npm run build
  DASK_BIN_DIR="$bin" npm test
)
reports="$target_dir/conformance"
mkdir -p "$reports"
echo "-- dask-conformance: js-worker"
# shellcheck disable=SC2086
"$bin/dask-conformance" worker --report "$reports/js-worker.xml" ${DASK_CONFORMANCE_ARGS:-} \
  -- node sdk-js/examples/worker.mjs '{scheduler}' --nthreads '{nthreads}'
# The same with dask/1.1 authentication over mutual TLS: the JS worker
# finds the run's credentials as every dask-rs program does (the runner's
# DASK_RS_HOME) and takes the run's TLS files as Dask's flags.
echo "-- dask-conformance --auth --tls: js-worker"
# shellcheck disable=SC2086
"$bin/dask-conformance" worker --auth --tls --report "$reports/js-worker-auth-tls.xml" ${DASK_CONFORMANCE_ARGS:-} \
  -- node sdk-js/examples/worker.mjs '{scheduler}' --nthreads '{nthreads}' \
  --tls-ca-file '{tls_ca_file}' --tls-cert '{tls_cert}'
