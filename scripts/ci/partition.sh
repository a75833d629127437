#!/usr/bin/env bash
# Network partition (issue 7, part 3): a scheduler, two workers and a
# client as hosts in network namespaces this script creates and removes,
# joined by veth pairs on a bridge in a namespace of its own. In the middle
# of a graph, worker w1's link goes down: the scheduler must declare it dead
# after the heartbeat timeout and the graph must complete on w2 with the
# right answer. When the link comes back, what the old w1 still sends must
# be ignored: it either takes the scheduler's `close` (since dask/1.1 with
# `reconnect: true`, so it registers again; a 1.0 worker exits), or finds
# its connection reset and registers again as a new, empty worker; the old
# incarnation never reappears. A second graph then runs on the healed
# cluster.
#
# Network safety: the 10.213.77.0/24 addresses exist only inside these
# namespaces, which have no default route; every process runs under
# `ip netns exec`, and each address a process connects to is checked with
# `ip route get` inside its namespace to go through that namespace's own
# veth before anything starts. Nothing leaves the machine.
#
# Needs root and `ip netns`; otherwise prints SKIPPED and exits 0. Bounded:
# every wait has a deadline; the whole run takes well under 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Credentials of this step alone: a scheduler it starts creates them in
# DASK_RS_HOME, and its clients and workers find them there with no flag,
# as on a user's machine (not the user's own ~/.dask-rs).
export DASK_RS_HOME="${DASK_RS_HOME:-$(mktemp -d)}"
unset DASK_CREDENTIALS

started=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[%5s s] %s\n' "$(since "$started")" "$*"; }

if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! ip netns list >/dev/null 2>&1; then
  echo "partition: SKIPPED (needs root and ip netns)"
  exit 0
fi
probe="dask-probe-$$"
if ! ip netns add "$probe" 2>/dev/null; then
  echo "partition: SKIPPED (cannot create a network namespace here)"
  exit 0
fi
ip netns del "$probe"

cargo build --locked -q -p dask-scheduler -p dask-worker -p dask-cluster --bins
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$(pwd)/$target_dir" ;; esac
bin="$target_dir/debug"

# ---- the network ---------------------------------------------------------------

id=$$
NS_BR="dask-$id-br"
NS_S="dask-$id-sched"
NS_W1="dask-$id-w1"
NS_W2="dask-$id-w2"
NS_C="dask-$id-client"
SUBNET=10.213.77
ADDR_S=$SUBNET.1
ADDR_W1=$SUBNET.11
ADDR_W2=$SUBNET.12
ADDR_C=$SUBNET.20
DEV=veth0
SCHEDULER="tcp://$ADDR_S:8786"

tmp=$(mktemp -d)
declare -A pids=()
namespaces=()

cleanup() {
  local status=$?
  for name in "${!pids[@]}"; do
    kill -TERM "${pids[$name]}" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    local alive=0
    for name in "${!pids[@]}"; do
      kill -0 "${pids[$name]}" 2>/dev/null && alive=1
    done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for name in "${!pids[@]}"; do
    kill -KILL "${pids[$name]}" 2>/dev/null || true
  done
  for ns in "${namespaces[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ]; then
    for f in "$tmp"/*.out "$tmp"/*.err; do
      [ -s "$f" ] && { echo "---- $(basename "$f")"; tail -n 30 "$f"; }
    done
  fi
  rm -rf "$tmp"
  local left
  left=$(ip netns list | grep -c "^dask-$id-" || true)
  if [ "$left" -ne 0 ]; then
    echo "partition: $left namespaces could not be removed" >&2
  fi
}
trap cleanup EXIT

fail() {
  log "partition: FAILED: $*"
  exit 1
}

add_ns() {
  ip netns add "$1"
  namespaces+=("$1")
  ip -n "$1" link set lo up
}

# A host: its namespace, a veth pair whose host end is $DEV there and whose
# other end is a port of the bridge.
add_host() { # NS ADDRESS PORT
  add_ns "$1"
  ip -n "$NS_BR" link add "h-$3" type veth peer name "$3"
  ip -n "$NS_BR" link set "h-$3" netns "$1"
  ip -n "$1" link set "h-$3" name "$DEV"
  ip -n "$1" addr add "$2/24" dev "$DEV"
  ip -n "$1" link set "$DEV" up
  ip -n "$NS_BR" link set "$3" master br0 up
}

add_ns "$NS_BR"
ip -n "$NS_BR" link add br0 type bridge
ip -n "$NS_BR" link set br0 up
add_host "$NS_S" "$ADDR_S" p-sched
add_host "$NS_W1" "$ADDR_W1" p-w1
add_host "$NS_W2" "$ADDR_W2" p-w2
add_host "$NS_C" "$ADDR_C" p-client
log "namespaces: ${namespaces[*]}"

# Every connection the test makes, checked before anything starts: from
# its namespace, the address goes through that namespace's veth. And no
# namespace has a route anywhere else.
check_route() { # NS ADDRESS
  local out
  out=$(ip -n "$1" route get "$2") || fail "no route from $1 to $2"
  case "$out" in
    *" dev $DEV "*) ;;
    *) fail "from $1, $2 is not reached through $DEV: $out" ;;
  esac
}
for ns in "$NS_S" "$NS_W1" "$NS_W2" "$NS_C"; do
  if [ -n "$(ip -n "$ns" route show default)" ] || ip -n "$ns" route get 192.0.2.1 >/dev/null 2>&1; then
    fail "$ns has a route out of the test network"
  fi
done
check_route "$NS_C" "$ADDR_S"
check_route "$NS_W1" "$ADDR_S"
check_route "$NS_W2" "$ADDR_S"
check_route "$NS_W1" "$ADDR_W2"
check_route "$NS_W2" "$ADDR_W1"
log "routes: each address is reached through its namespace's $DEV; no namespace routes elsewhere"

# ---- processes -------------------------------------------------------------------

start() { # NAME NS COMMAND...
  local name=$1 ns=$2
  shift 2
  ip netns exec "$ns" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids[$name]=$!
}

# Polls COMMAND every 0.2 s until it succeeds or SECONDS pass.
wait_for() { # DESCRIPTION SECONDS COMMAND...
  local what=$1 limit=$2
  shift 2
  local deadline=$(($(date +%s) + limit))
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out after $limit s waiting for $what"
    sleep 0.2
  done
}

info() {
  ip netns exec "$NS_C" "$bin/dask-rs" info --scheduler "$SCHEDULER" 2>/dev/null
}

# The line `dask-rs info` prints for worker NAME, empty when not registered.
worker_line() { # NAME
  info | grep -E "^  $1 tcp://" || true
}

# The data address a worker process announced last.
announced() { # NAME
  sed -n 's/^Worker .* at \(tcp:[^,]*\),.*/\1/p' "$tmp/$1.out" | tail -n 1
}

start scheduler "$NS_S" "$bin/dask-scheduler" --host "$ADDR_S" --port 8786 \
  --heartbeat-timeout 2 --validate
wait_for "the scheduler" 20 grep -q "^Scheduler at $SCHEDULER" "$tmp/scheduler.out"
start w1 "$NS_W1" "$bin/dask-worker" "$SCHEDULER" --host "$ADDR_W1" --nthreads 2 --name w1
start w2 "$NS_W2" "$bin/dask-worker" "$SCHEDULER" --host "$ADDR_W2" --nthreads 2 --name w2
wait_for "w1 to register" 20 grep -q "^Worker w1 at" "$tmp/w1.out"
wait_for "w2 to register" 20 grep -q "^Worker w2 at" "$tmp/w2.out"
w1_old=$(announced w1)
log "scheduler at $SCHEDULER; w1 at $w1_old, w2 at $(announced w2)"

# A graph of 48 quarter-second sleeps and their sum: about 3 s on four
# threads, so w1 is cut off with results in memory and tasks running.
graph() { # PREFIX FILE
  {
    echo '{"tasks": ['
    for i in $(seq 0 47); do
      echo "{\"key\": \"$1-$i\", \"function\": \"sleep\", \"args\": [0.25, $i]},"
    done
    printf '{"key": "%s-total", "function": "sum", "args": [[' "$1"
    for i in $(seq 0 47); do
      printf '{"$ref": "%s-%d"}' "$1" "$i"
      [ "$i" -lt 47 ] && printf ', '
    done
    echo ']]}'
    echo "], \"wanted\": [\"$1-total\"]}"
  } >"$2"
}
graph first "$tmp/first.json"
graph second "$tmp/second.json"
expected=$(((47 * 48) / 2))

start submit "$NS_C" "$bin/dask-rs" submit --scheduler "$SCHEDULER" "$tmp/first.json"

# ---- the partition ---------------------------------------------------------------

w1_busy() {
  local line
  line=$(worker_line w1)
  [[ "$line" =~ processing=([0-9]+)\ stored=([0-9]+) ]] &&
    [ "${BASH_REMATCH[1]}" -gt 0 ] && [ "${BASH_REMATCH[2]}" -gt 0 ]
}
wait_for "w1 to hold results and run tasks" 30 w1_busy
log "mid-graph: $(worker_line w1 | sed 's/^ *//')"

ip -n "$NS_BR" link set p-w1 down
cut_at=$(date +%s.%N)
log "cut: w1's link is down"

w1_gone() { [ -z "$(worker_line w1)" ] && [ -n "$(worker_line w2)" ]; }
wait_for "the scheduler to declare w1 dead" 30 w1_gone
log "the scheduler declared w1 dead $(since "$cut_at") s after the cut (heartbeat timeout 2 s)"

submit_done() { ! kill -0 "${pids[submit]}" 2>/dev/null; }
wait_for "the graph to complete on w2" 60 submit_done
status=0
wait "${pids[submit]}" || status=$?
unset 'pids[submit]'
[ "$status" -eq 0 ] || fail "dask-rs submit exited $status"
grep -qx "first-total = $expected" "$tmp/submit.out" ||
  fail "wrong result: $(cat "$tmp/submit.out")"
log "the graph completed without w1: first-total = $expected"

# ---- the link comes back -----------------------------------------------------------

ip -n "$NS_BR" link set p-w1 up
log "healed: w1's link is up"

# What the old w1 still sends reaches a connection the scheduler closed:
# it gets the scheduler's `close` (and exits 0) or a reset (and registers
# again, with a fresh data address). Until one of these, the scheduler
# must never list it.
w1_settled() {
  local line
  line=$(worker_line w1)
  if [ -n "$line" ] && [[ "$line" == *"$w1_old"* ]]; then
    fail "the old incarnation of w1 is registered again: $line"
  fi
  if ! kill -0 "${pids[w1]}" 2>/dev/null; then
    return 0
  fi
  local now
  now=$(announced w1)
  [ "$now" != "$w1_old" ] && [ -n "$line" ] && [[ "$line" == *"$now"* ]]
}
wait_for "the old w1 to take its close or register anew" 60 w1_settled
if kill -0 "${pids[w1]}" 2>/dev/null; then
  line=$(worker_line w1)
  [[ "$line" =~ stored=0\  ]] || fail "the new w1 is not empty: $line"
  log "w1: $(grep -m1 'registering again' "$tmp/w1.err" || true)"
  log "w1 registered again as a new, empty worker at $(announced w1): $(echo "$line" | sed 's/^ *//')"
else
  w1_status=0
  wait "${pids[w1]}" || w1_status=$?
  unset 'pids[w1]'
  [ "$w1_status" -eq 0 ] || fail "w1 exited $w1_status (expected the scheduler's close)"
  [ -z "$(worker_line w1)" ] || fail "w1 exited but is registered"
  log "w1 took the scheduler's close and exited 0; the scheduler lists only w2"
fi

start submit2 "$NS_C" "$bin/dask-rs" submit --scheduler "$SCHEDULER" "$tmp/second.json"
submit2_done() { ! kill -0 "${pids[submit2]}" 2>/dev/null; }
wait_for "the second graph" 60 submit2_done
status=0
wait "${pids[submit2]}" || status=$?
unset 'pids[submit2]'
[ "$status" -eq 0 ] || fail "the second dask-rs submit exited $status"
grep -qx "second-total = $expected" "$tmp/submit2.out" ||
  fail "wrong second result: $(cat "$tmp/submit2.out")"
log "the second graph completed on the healed cluster: second-total = $expected"

kill -0 "${pids[scheduler]}" 2>/dev/null || fail "the scheduler (--validate) died"
info | sed 's/^/  /'
log "partition: PASSED"
