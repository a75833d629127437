#!/usr/bin/env bash
# README.md's commands, verbatim: every ```sh block, in order, run by bash
# from the checkout's root as a new user would (HOME is a fresh directory,
# so `make install PREFIX=$HOME/.local` installs there, and PATH holds no
# dask-rs program before it), then the output checked. Programs the blocks
# start in the background are stopped at the end (SIGTERM, then SIGKILL).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
target_dir=${CARGO_TARGET_DIR:-$root/target}
case $target_dir in /*) ;; *) target_dir=$root/$target_dir ;; esac

work=$(mktemp -d)
script=$work/readme-commands.sh
out=$work/out.log
awk '/^```sh$/{on=1; next} /^```$/{on=0} on' README.md >"$script"
[ -s "$script" ] || { echo "readme: README.md has no \`\`\`sh block" >&2; exit 1; }
echo "-- readme: $(grep -c . "$script") command lines from README.md"

mkdir -p "$work/home"
path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v "/.local/bin$" | paste -sd: -)

cargo_home=${CARGO_HOME:-$HOME/.cargo}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
status=0
# A session of its own (setsid), so that whatever the commands leave
# running can be stopped together; its id is its process group's.
env -u DASK_RS_HOME -u DASK_CREDENTIALS \
  HOME=$work/home PATH=$path CARGO_TARGET_DIR=$target_dir \
  CARGO_HOME=$cargo_home RUSTUP_HOME=$rustup_home \
  setsid --wait bash -c 'echo $$ >"$1"; exec bash -euo pipefail "$2"' _ "$work/pgid" "$script" \
  >"$out" 2>&1 </dev/null || status=$?
pgid=$(cat "$work/pgid")
kill -TERM -- "-$pgid" 2>/dev/null || true
for _ in $(seq 50); do
  kill -0 -- "-$pgid" 2>/dev/null || break
  sleep 0.1
done
kill -KILL -- "-$pgid" 2>/dev/null || true
rm -f scheduler.json

fail() {
  echo "readme: $*" >&2
  sed 's/^/   | /' "$out" >&2
  rm -rf "$work"
  exit 1
}
[ "$status" -eq 0 ] || fail "the commands exited $status"
for line in "mean = 2.5" "total = 10" "Scheduler at tcp://127.0.0.1:8796" "workers: "; do
  grep -q "^$line" "$out" || fail "no line starting with \"$line\" in the output"
done
[ -x "$work/home/.local/bin/dask-rs" ] || fail "make install put no dask-rs in \$HOME/.local/bin"
grep -v '^\s*Compiling\|^\s*Finished' "$out" | sed 's/^/   | /'
rm -rf "$work"
echo "readme: ok"
