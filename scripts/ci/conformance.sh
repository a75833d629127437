#!/usr/bin/env bash
# Conformance: runs dask-conformance against every worker dask-rs ships,
# and against the Rust, C and JS clients through their harnesses.
# Each run prints one line per case and ends with `N passed, M failed`;
# JUnit reports go to target/conformance/. Extra runner options can be
# given in DASK_CONFORMANCE_ARGS (e.g. "--timeout-scale 2" on a slow host).
# (The broken fixture workers are run by `cargo test -p dask-conformance`.)
set -euo pipefail
cd "$(dirname "$0")/../.."
# Credentials of this step alone: a scheduler it starts creates them in
# DASK_RS_HOME, and its clients and workers find them there with no flag,
# as on a user's machine (not the user's own ~/.dask-rs).
export DASK_RS_HOME="${DASK_RS_HOME:-$(mktemp -d)}"
unset DASK_CREDENTIALS
cargo build --locked -q -p dask-conformance -p dask-worker --bins
target_dir="${CARGO_TARGET_DIR:-target}"
bin="$target_dir/debug"
reports="$target_dir/conformance"
mkdir -p "$reports"
status=0

run_worker() { # NAME [RUNNER OPTIONS... --] COMMAND...  (placeholders: {scheduler} {nthreads} {name} ...)
  local name=$1 options=()
  shift
  case " $* " in
    *" -- "*) while [ "$1" != -- ]; do options+=("$1"); shift; done; shift ;;
  esac
  echo "-- dask-conformance${options[*]:+ ${options[*]}}: $name"
  # shellcheck disable=SC2086
  "$bin/dask-conformance" worker "${options[@]}" --report "$reports/$name.xml" ${DASK_CONFORMANCE_ARGS:-} -- "$@" || status=1
}

run_worker dask-worker "$bin/dask-worker" '{scheduler}' --nthreads '{nthreads}'
# The same with dask/1.1 authentication (--auth: the runner writes a secret
# of its own where the worker finds it with no flag, DASK_RS_HOME, and
# requires its proof on every connection), then also over mutual TLS
# (--tls: the runner's CA and certificate, given as Dask's flags).
run_worker dask-worker-auth --auth -- "$bin/dask-worker" '{scheduler}' --nthreads '{nthreads}'
run_worker dask-worker-auth-tls --auth --tls -- "$bin/dask-worker" '{scheduler}' --nthreads '{nthreads}' \
  --tls-ca-file '{tls_ca_file}' --tls-cert '{tls_cert}'

# The C SDK's example worker (a worker written in C on libdask).
if [ -f sdk-c/examples/worker.c ]; then
  cargo build --locked -q -p dask-sdk-c
  cc -std=c11 -Wall -Wextra -O1 -Isdk-c/include sdk-c/examples/worker.c "$bin/libdask.a" \
    -lpthread -ldl -lm -o "$reports/c-worker"
  run_worker c-worker "$reports/c-worker" '{scheduler}' '{nthreads}' '{name}'
  # libdask finds the credentials as every dask-rs program does; the
  # example reads the TLS files from DASK_TLS_CA_FILE / DASK_TLS_CERT.
  run_worker c-worker-auth-tls --auth --tls -- "$reports/c-worker" '{scheduler}' '{nthreads}' '{name}'
fi
# (The JS worker is run by js-sdk.sh, which builds the package.)

# Client conformance: the runner plays the scheduler and drives each
# client through its harness (spec/CONFORMANCE.md, "Client conformance").
run_client() { # NAME COMMAND...  (placeholder: {scheduler})
  local name=$1
  shift
  echo "-- dask-conformance client: $name"
  # shellcheck disable=SC2086
  "$bin/dask-conformance" client --report "$reports/$name.xml" ${DASK_CONFORMANCE_ARGS:-} -- "$@" || status=1
  # Then with authentication: the client finds the run's client secret
  # as every dask-rs program does (the runner's DASK_RS_HOME).
  echo "-- dask-conformance client --auth: $name"
  # shellcheck disable=SC2086
  "$bin/dask-conformance" client --auth --report "$reports/$name-auth.xml" ${DASK_CONFORMANCE_ARGS:-} -- "$@" || status=1
}

cargo build --locked -q -p dask-client --examples
run_client rust-client "$bin/examples/conformance_client" '{scheduler}'
cargo build --locked -q -p dask-sdk-c
cc -std=c11 -Wall -Wextra -Wpedantic -Werror -O1 -Isdk-c/include sdk-c/examples/conformance_client.c \
  "$bin/libdask.a" -lpthread -ldl -lm -o "$reports/c-client"
run_client c-client "$reports/c-client" '{scheduler}'
if command -v node >/dev/null; then
  rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
  (cd sdk-js && node scripts/build.mjs)
  run_client js-client node sdk-js/examples/conformance-client.mjs '{scheduler}'
else
  echo "-- dask-conformance client: js-client skipped (no node)"
fi
exit $status
