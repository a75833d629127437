#!/usr/bin/env bash
# Bounded fuzzing: every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each
# (default 20), with debug assertions (integer overflow is a crash).
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 enables them on the
# stable toolchain. A crash fails the step; its input is left in
# fuzz/artifacts/TARGET/ (to keep as a regression test, see fuzz/README.md).
# The stable, deterministic stand-ins (proptests that feed the same stories
# random input and replay the crashers) run with the ordinary tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO_FUZZ_VERSION=0.13.2
seconds="${FUZZ_SECONDS:-20}"

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked ||
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

export RUSTC_BOOTSTRAP=1
target_dir="${CARGO_TARGET_DIR:-target}/fuzz"
case "$target_dir" in /*) ;; *) target_dir="$(pwd)/$target_dir" ;; esac
for target in $(cargo fuzz list); do
  echo "-- fuzz $target for ${seconds} s"
  # A fresh corpus per run, seeded with the kept crashers of the target,
  # so runs stay bounded and alike.
  corpus="$target_dir/corpus/$target"
  rm -rf "$corpus"
  mkdir -p "$corpus"
  case "$target" in
    frame_decoder) seeds=core/tests/fuzz_crashers ;;
    scheduler_messages) seeds=scheduler/tests/fuzz_crashers ;;
    worker_messages) seeds=worker/tests/fuzz_crashers ;;
    *) seeds= ;;
  esac
  if [ -n "$seeds" ] && [ -d "$seeds" ]; then
    find "$seeds" -type f ! -name '*.md' -exec cp {} "$corpus/" \;
  fi
  log="$target_dir/$target.log"
  status=0
  cargo fuzz run --debug-assertions --target-dir "$target_dir" "$target" "$corpus" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(Done|stat::peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz: $target failed (exit $status); the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
