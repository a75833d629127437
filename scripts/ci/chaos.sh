#!/usr/bin/env bash
# The chaos soak's 2-minute cut (issue 20 item 6): dask-chaos runs graphs
# from three clients against a scheduler (--validate) and workers while it
# kills and replaces workers, pauses workers and the scheduler, keeps a
# client that never reads its gathers, and partitions a worker in a network
# namespace (with root and ip netns; otherwise without the partition), and
# a worker spills to a full disk (root: a 5 MB tmpfs). Every
# result is checked exactly, the scheduler's memory against a bound. The
# seed is printed first (by default drawn from the commit, see below): `CHAOS_SEED=N scripts/ci/chaos.sh` (or
# `target/debug/dask-chaos --seed N`) draws the same faults again.
# The full soak is the same command with more `--seconds` (a benchmark);
# `--memory-limit 8MB` makes every worker spill. With root, one more
# worker spills to a full 5 MB tmpfs (issue 20 item 2; `--no-full-disk`
# leaves it out).
set -euo pipefail
cd "$(dirname "$0")/../.."
export DASK_RS_HOME="${DASK_RS_HOME:-$(mktemp -d)}"
unset DASK_CREDENTIALS
cargo build --locked -q -p dask-scheduler -p dask-worker -p dask-testkit --bins
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$(pwd)/$target_dir" ;; esac
# The default seed comes from the commit: a rerun of one commit draws the
# same faults (so a red CI run can be replayed), and each commit draws others.
commit_seed() { git rev-parse --short=8 HEAD 2> /dev/null | { read -r h && echo $((16#$h)); }; }
seed="${CHAOS_SEED:-$(commit_seed || od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
DASK_BIN_DIR="$target_dir/debug" "$target_dir/debug/dask-chaos" \
  --seed "$seed" --seconds "${CHAOS_SECONDS:-120}"
