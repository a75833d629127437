#!/usr/bin/env bash
# The instruction-count guard (issue 19 item 5): instructions per task of
# the scheduler's and the workers' event paths and of the codec, on fixed
# small graphs in the simulated cluster, counted by callgrind (so they do
# not depend on the machine's speed or load), held to bench/instructions.txt:
# more than 20% over a line fails. See testkit/src/bin/dask-instructions.rs.
#
#   scripts/ci/instructions.sh            # check
#   scripts/ci/instructions.sh --update   # re-baseline (say why in the commit)
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v valgrind >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "instructions: installing valgrind"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
  else
    echo "instructions: valgrind is missing: install it (apt-get install valgrind)" >&2
    exit 1
  fi
fi
cargo build --release --locked -q -p dask-testkit --bin dask-instructions
target_dir=${CARGO_TARGET_DIR:-target}
"$target_dir/release/dask-instructions" check bench/instructions.txt "$@"
