#!/usr/bin/env bash
# Rewrites every generated file that is committed (the table of them is in
# ARCHITECTURE.md, "Generated files"): runs each one's check test with
# DASK_REGENERATE=1, which makes the test write the file instead of failing.
# Review the diff and commit it. Without the variable the same tests fail
# with "... is not up to date: run `scripts/regenerate.sh` and commit".
set -euo pipefail
cd "$(dirname "$0")/.."
export DASK_REGENERATE=1
cargo test --locked -q -p dask-core --test generated
cargo test --locked -q -p dask-conformance --test cases
cargo test --locked -q -p dask-sdk-c --test header
git status --short -- spec conformance/cases sdk-c/include
