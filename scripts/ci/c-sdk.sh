#!/usr/bin/env bash
# The C SDK (sdk-c/): builds libdask and the dask-scheduler / dask-worker
# binaries, checks the committed header against cbindgen's output, compiles
# every example and C/C++ test with -Wall -Wextra -Wpedantic -Werror, runs
# them all once under ASan+UBSan and once under valgrind (the remote ones
# against real dask-scheduler, dask-worker, C worker and C++ worker
# processes), and installs into a temporary PREFIX to build with pkg-config.
#
#   scripts/ci/c-sdk.sh            # everything
#   C_SDK_MODES=asan scripts/ci/c-sdk.sh    # one sanitizer pass only
set -euo pipefail
cd "$(dirname "$0")/../.."
# Credentials of this step alone: a scheduler it starts creates them in
# DASK_RS_HOME, and its clients and workers find them there with no flag,
# as on a user's machine (not the user's own ~/.dask-rs).
export DASK_RS_HOME="${DASK_RS_HOME:-$(mktemp -d)}"
unset DASK_CREDENTIALS
root=$PWD
modes=${C_SDK_MODES:-"asan valgrind"}

# ---- tools (a fresh Debian machine has gcc/g++, maybe not the rest) ----------
missing=()
for tool in gcc g++ make valgrind pkg-config; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "c-sdk: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "c-sdk: missing ${missing[*]}: install them (apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

target_dir=${CARGO_TARGET_DIR:-$root/target}
case $target_dir in /*) ;; *) target_dir=$root/$target_dir ;; esac
release=$target_dir/release
out=$target_dir/sdk-c
logs=$out/logs
mkdir -p "$logs"

# ---- processes this script starts, stopped on exit -------------------------
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

step() { echo "-- c-sdk: $*"; }

# ---- build, header, README ----------------------------------------------------
step "make -C sdk-c lib: cargo build --release (libdask, dask-scheduler, dask-worker, dask-rs)"
make -s -C sdk-c lib CARGO="cargo -q" CARGO_TARGET_DIR="$target_dir"
for f in libdask.so libdask.a dask-scheduler dask-worker dask-rs; do
  [ -e "$release/$f" ] || { echo "c-sdk: $release/$f was not built" >&2; exit 1; }
done

step "header: include/libdask.h is cbindgen's output; version macros match Cargo.toml"
cargo test --release --locked -q -p dask-sdk-c --test header

step "README: its C program is examples/hello.c"
if ! diff <(awk '/^```c$/{on=1; next} /^```$/{if (on) exit} on' sdk-c/README.md) sdk-c/examples/hello.c; then
  echo "c-sdk: the C block of sdk-c/README.md differs from sdk-c/examples/hello.c" >&2
  exit 1
fi

# ---- compile --------------------------------------------------------------------
warnings=(-Wall -Wextra -Wpedantic -Werror -g -Isdk-c/include)
link=(-L"$release" -ldask -lpthread -Wl,-rpath,"$release")
sanitize=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
c_sources=(sdk-c/examples/*.c sdk-c/tests/c/*.c)
cpp_sources=(sdk-c/examples/*.cpp sdk-c/tests/cpp/*.cpp)

compile() { # MODE
  local mode=$1 dir=$out/$1 extra=() src
  mkdir -p "$dir"
  if [ "$mode" = asan ]; then extra=("${sanitize[@]}"); else extra=(-O1); fi
  for src in "${c_sources[@]}"; do
    gcc -std=c11 "${warnings[@]}" "${extra[@]}" "$src" "${link[@]}" -o "$dir/$(basename "${src%.c}")"
  done
  for src in "${cpp_sources[@]}"; do
    g++ -std=c++17 "${warnings[@]}" "${extra[@]}" "$src" "${link[@]}" -o "$dir/$(basename "${src%.cpp}")"
  done
  if [ "$mode" = asan ]; then
    for src in "${c_sources[@]}" "${cpp_sources[@]}"; do
      local bin
      bin=$dir/$(basename "${src%.*}")
      grep -q __asan_init <(nm "$bin") || { echo "c-sdk: $bin has no ASan runtime" >&2; exit 1; }
    done
  fi
}

# ---- run --------------------------------------------------------------------------
runner=()
set_runner() { # MODE
  if [ "$1" = asan ]; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    runner=()
  else
    unset ASAN_OPTIONS UBSAN_OPTIONS
    runner=(valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect,possible
      --error-exitcode=1 --suppressions="$root/sdk-c/tests/valgrind.supp")
  fi
}

run() { # MODE NAME ARGS...  (in the foreground, bounded)
  local mode=$1 name=$2
  shift 2
  local log=$logs/$mode-$name.log
  if ! timeout 600 "${runner[@]}" "$out/$mode/$name" "$@" >"$log" 2>&1; then
    echo "c-sdk: $name failed under $mode:" >&2
    tail -n 60 "$log" >&2
    exit 1
  fi
  tail -n 1 "$log"
}

start() { # MODE NAME ARGS...  (in the background; sets $started)
  local mode=$1 name=$2
  shift 2
  "${runner[@]}" "$out/$mode/$name" "$@" >"$logs/$mode-$name.log" 2>&1 &
  started=$!
  pids+=("$started")
}

stop() { # MODE NAME PID: SIGTERM, then its exit status must be 0
  local mode=$1 name=$2 pid=$3 status=0 i
  kill -TERM "$pid"
  for ((i = 0; i < 600; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  wait "$pid" || status=$?
  if [ "$status" != 0 ]; then
    echo "c-sdk: $name exited with $status under $mode:" >&2
    tail -n 60 "$logs/$mode-$name.log" >&2
    exit 1
  fi
}

remote() { # MODE [tls]: C and C++ clients and workers against real processes
  local mode=$1 tls=${2:-} address="" i scheduler worker tls_flags=()
  # Credentials: the scheduler creates them in DASK_RS_HOME; every other
  # program (dask-worker, the C and C++ programs through libdask) finds them.
  if [ -n "$tls" ]; then
    # The C programs read the TLS files from the examples' variables.
    export DASK_TLS_CA_FILE=$DASK_RS_HOME/tls/ca.pem DASK_TLS_CERT=$DASK_RS_HOME/tls/cluster.pem
    [ -e "$DASK_TLS_CERT" ] || "$release/dask-rs" credentials tls >/dev/null
    tls_flags=(--tls-ca-file "$DASK_TLS_CA_FILE" --tls-cert "$DASK_TLS_CERT")
  fi
  # Emptied here, not by the background redirect: that one runs in the
  # child, after the loop below may have read an earlier run's address.
  : >"$logs/$mode$tls-scheduler.log"
  "$release/dask-scheduler" --port 0 "${tls_flags[@]}" >"$logs/$mode$tls-scheduler.log" 2>&1 &
  scheduler=$!
  pids+=("$scheduler")
  for ((i = 0; i < 200; i++)); do
    address=$(grep -o 't[cl][ps]://[0-9.]*:[0-9]*' "$logs/$mode$tls-scheduler.log" 2>/dev/null | head -n 1 || true)
    [ -n "$address" ] && break
    sleep 0.05
  done
  [ -n "$address" ] || { echo "c-sdk: dask-scheduler did not start" >&2; exit 1; }
  "$release/dask-worker" "$address" --nthreads 1 "${tls_flags[@]}" >"$logs/$mode$tls-dask-worker.log" 2>&1 &
  worker=$!
  pids+=("$worker")
  start "$mode" worker "$address" 2 c-worker
  local c_worker=$started
  # The C++ programs take dask::Security from the same variables.
  start "$mode" cpp_worker "$address" 2 cpp-worker
  local cpp_worker=$started
  printf '   %-12s ' "remote${tls:+-$tls}"
  run "$mode" remote "$address" 3
  printf '   %-12s ' "cpp_remote${tls:+-$tls}"
  run "$mode" cpp_remote "$address" 3
  stop "$mode" worker "$c_worker"
  stop "$mode" cpp_worker "$cpp_worker"
  kill -TERM "$worker" "$scheduler"
  wait "$worker" "$scheduler" || true
  [ -z "$tls" ] || unset DASK_TLS_CA_FILE DASK_TLS_CERT
}

for mode in $modes; do
  step "compile ($mode)"
  compile "$mode"
  set_runner "$mode"
  step "run examples and tests ($mode)"
  started_at=$(date +%s)
  for name in hello local cpp_local inprocess test_api test_hpp; do
    printf '   %-12s ' "$name"
    run "$mode" "$name"
  done
  # A C worker coming back after dask-scheduler --journal is killed and
  # started again (the test program starts and kills it).
  printf '   %-12s ' test_reconnect
  run "$mode" test_reconnect "$release/dask-scheduler"
  step "remote cluster: dask-scheduler + dask-worker + C and C++ workers, C and C++ clients ($mode)"
  remote "$mode"
  # Under valgrind's emulation a TLS handshake's cryptography takes longer
  # than the scheduler's 10 s bound on a half-done handshake: TLS runs
  # under ASan only (authentication runs in both modes).
  if [ "$mode" = asan ]; then
    step "the same over TLS, with a cluster CA from dask-rs credentials tls ($mode)"
    remote "$mode" tls
  fi
  echo "   $mode: all passed ($(($(date +%s) - started_at)) s)"
done
unset ASAN_OPTIONS UBSAN_OPTIONS

# ---- install ------------------------------------------------------------------------
step "make install PREFIX=<tmp>; build with pkg-config (shared and static, C and C++)"
prefix=$(mktemp -d)
make -s -C sdk-c install PREFIX="$prefix" CARGO_TARGET_DIR="$target_dir" >"$logs/install.log" 2>&1 ||
  { cat "$logs/install.log" >&2; exit 1; }
soname=$(readelf -d "$prefix/lib/libdask.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
case $version in 0.*) abi=0.$(echo "$version" | cut -d. -f2) ;; *) abi=${version%%.*} ;; esac
[ "$soname" = "libdask.so.$abi" ] || { echo "c-sdk: libdask.so's SONAME is '$soname', not libdask.so.$abi" >&2; exit 1; }
[ "$(readlink "$prefix/lib/libdask.so")" = "libdask.so.$abi" ] &&
  [ "$(readlink "$prefix/lib/libdask.so.$abi")" = "libdask.so.$version" ] ||
  { echo "c-sdk: the libdask.so links are not libdask.so -> .$abi -> .$version" >&2; exit 1; }
for f in lib/libdask.so.$version lib/libdask.a bin/dask-scheduler bin/dask-worker; do
  if readelf -SW "$prefix/$f" | grep -Eq '\.debug_(info|line|str|ranges|loc)'; then
    echo "c-sdk: installed $f has debug info" >&2
    exit 1
  fi
done
"$prefix/bin/dask-scheduler" --help >/dev/null && "$prefix/bin/dask-worker" --help >/dev/null ||
  { echo "c-sdk: the installed binaries do not run" >&2; exit 1; }
echo "   SONAME $soname; sizes: $(du -h "$prefix/lib/libdask.so.$version" "$prefix/lib/libdask.a" "$prefix/bin/dask-scheduler" | awk '{printf "%s %s  ", $2, $1}' | sed "s|$prefix/||g")"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
app=$out/installed
mkdir -p "$app"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror sdk-c/examples/hello.c $(pkg-config --cflags --libs dask) -o "$app/hello-shared"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror sdk-c/examples/hello.c $(pkg-config --cflags --libs dask-static) -o "$app/hello-static"
# shellcheck disable=SC2046
c++ -std=c++17 -Wall -Werror sdk-c/examples/cpp_local.cpp $(pkg-config --cflags --libs dask) -o "$app/cpp-shared"
LD_LIBRARY_PATH=$prefix/lib "$app/hello-shared"
"$app/hello-static"
LD_LIBRARY_PATH=$prefix/lib "$app/cpp-shared" >/dev/null
if ldd "$app/hello-static" | grep -q libdask; then
  echo "c-sdk: hello-static links libdask.so" >&2
  exit 1
fi
rm -rf "$prefix"
echo "c-sdk: ok"
