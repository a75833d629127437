#!/usr/bin/env bash
# Unit, property, vector, schema-drift and end-to-end tests of every crate.
set -euo pipefail
# Credentials of this step alone: a scheduler it starts creates them in
# DASK_RS_HOME, and its clients and workers find them there with no flag,
# as on a user's machine (not the user's own ~/.dask-rs).
export DASK_RS_HOME="${DASK_RS_HOME:-$(mktemp -d)}"
unset DASK_CREDENTIALS
cargo test --workspace --doc --locked -q
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
