#!/usr/bin/env bash
# The one test command: every CI step, in order. Each step is a script of
# its own that can be run alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=(setup fmt clippy wasm rust-tests c-sdk instructions js-sdk python partition chaos fuzz conformance python-dask browser readme)
for step in "${steps[@]}"; do
  echo "== $step"
  start=$(date +%s)
  bash "scripts/ci/$step.sh"
  echo "== $step ok ($(( $(date +%s) - start )) s)"
done
echo "== all ${#steps[@]} steps passed: ${steps[*]}"
