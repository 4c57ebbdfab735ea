#!/usr/bin/env bash
# A Weir cluster of N nodes (default 3) on loopback, for manual use and for CI.
#
#   tests/cluster/cluster.sh start  [N]   start N nodes and wait until each is ready
#   tests/cluster/cluster.sh stop   [N]   SIGTERM every node, SIGKILL what is left after a while
#   tests/cluster/cluster.sh status [N]   which nodes run; exit 0 only when all of them do
#
# Node i (from 1) is a broker and a controller (`process.roles=broker,controller`) with its
# client listener on 127.0.0.1:(9090+2i) (node 1 on 9092, then 9094, 9096) and its
# CONTROLLER listener on 127.0.0.1:(19091+2i) (19093, 19095, 19097). Everything the cluster
# writes goes under $WEIR_CLUSTER_DIR (default ./weir-cluster-data): node-i/ (its log.dirs),
# node-i.log (its output, appended to across starts) and node-i.pid.
#
# Environment:
#   WEIR_CLUSTER_DIR      data, logs and pids (default ./weir-cluster-data)
#   WEIR_CLUSTER_PORT_OFFSET  added to every port (default 0), to run beside another cluster
#   WEIR_BIN              the weir binary (default target/release/weir, else target/debug/weir)
#   WEIR_CLUSTER_ARGS     extra flags for every node (e.g. "--num.partitions=6")
#   WEIR_READY_TIMEOUT    seconds to wait for the nodes to be ready (default 60)
#   WEIR_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 20)
#   RUST_LOG              node log level (default: the broker's, info with openraft at error)
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
command=${1:-}
n=${2:-3}
dir=${WEIR_CLUSTER_DIR:-./weir-cluster-data}
ready_timeout=${WEIR_READY_TIMEOUT:-60}
stop_timeout=${WEIR_STOP_TIMEOUT:-20}

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

case "$n" in
  '' | *[!0-9]* | 0) echo "cluster.sh: N must be a positive number, not '$n'" >&2; exit 2 ;;
esac

offset=${WEIR_CLUSTER_PORT_OFFSET:-0}
case "$offset" in
  '' | *[!0-9]*) echo "cluster.sh: WEIR_CLUSTER_PORT_OFFSET must be a number, not '$offset'" >&2; exit 2 ;;
esac
client_port() { echo $((9090 + 2 * $1 + offset)); }
controller_port() { echo $((19091 + 2 * $1 + offset)); }

# The pid of node $1 if it is running (per its pid file), else nothing.
pid_of() {
  local file="$dir/node-$1.pid" pid
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    echo "$pid"
  else
    return 1
  fi
}

# How many times node $1 has logged that it is ready (0 before its first start).
ready_lines() {
  if [ -f "$dir/node-$1.log" ]; then
    grep -c 'weir broker ready' "$dir/node-$1.log"
  else
    echo 0
  fi
}

weir_bin() {
  if [ -n "${WEIR_BIN:-}" ]; then
    echo "$WEIR_BIN"
  elif [ -x "$root/target/release/weir" ]; then
    echo "$root/target/release/weir"
  else
    echo "$root/target/debug/weir"
  fi
}

start() {
  local bin voters i pid port
  bin=$(weir_bin)
  if [ ! -x "$bin" ]; then
    echo "cluster.sh: no weir binary at $bin (cargo build --release -p weir-broker, or set WEIR_BIN)" >&2
    exit 1
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  voters=""
  for i in $(seq 1 "$n"); do
    if pid=$(pid_of "$i"); then
      echo "cluster.sh: node $i is already running (pid $pid); stop the cluster first" >&2
      exit 1
    fi
    voters="$voters${voters:+,}$i@127.0.0.1:$(controller_port "$i")"
  done
  for i in $(seq 1 "$n"); do
    for port in $(client_port "$i") $(controller_port "$i"); do
      # Something already listens there (another broker, an earlier cluster): say so plainly
      # rather than let a node fail with "address already in use" in its log.
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "cluster.sh: port $port is already in use on 127.0.0.1 (another broker or cluster?); not starting" >&2
        exit 1
      fi
    done
  done
  local started_ms
  started_ms=$(date +%s%3N)
  declare -A before
  for i in $(seq 1 "$n"); do
    before[$i]=$(ready_lines "$i")
    # Started together: a node is ready only once a majority of the quorum is up.
    # shellcheck disable=SC2086 # WEIR_CLUSTER_ARGS is a list of flags
    RUST_LOG=${RUST_LOG:-info,openraft=error} NO_COLOR=1 nohup "$bin" \
      --node.id="$i" \
      --listeners="PLAINTEXT://127.0.0.1:$(client_port "$i"),CONTROLLER://127.0.0.1:$(controller_port "$i")" \
      --controller.quorum.voters="$voters" \
      --log.dirs="$dir/node-$i" \
      --weir.admin.listener=none \
      --offsets.topic.num.partitions=3 \
      --broker.session.timeout.ms=3000 \
      --broker.heartbeat.interval.ms=500 \
      ${WEIR_CLUSTER_ARGS:-} \
      </dev/null >>"$dir/node-$i.log" 2>&1 &
    echo $! >"$dir/node-$i.pid"
  done
  local deadline=$((SECONDS + ready_timeout)) waiting
  while :; do
    waiting=""
    for i in $(seq 1 "$n"); do
      if [ "$(ready_lines "$i")" -le "${before[$i]}" ]; then
        if ! pid_of "$i" >/dev/null; then
          echo "cluster.sh: node $i exited before it was ready; its log ($dir/node-$i.log) ends with:" >&2
          tail -n 40 "$dir/node-$i.log" >&2
          stop >/dev/null 2>&1
          exit 1
        fi
        waiting="$waiting $i"
      fi
    done
    [ -z "$waiting" ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      for i in $waiting; do
        echo "cluster.sh: node $i not ready within ${ready_timeout}s; its log ($dir/node-$i.log) ends with:" >&2
        grep -v ' openraft::' "$dir/node-$i.log" | tail -n 40 >&2
      done
      stop >/dev/null 2>&1
      exit 1
    fi
    sleep 0.1
  done
  echo "cluster.sh: $n nodes ready in $(($(date +%s%3N) - started_ms)) ms; bootstrap $(bootstrap); data in $dir"
}

bootstrap() {
  local i out=""
  for i in $(seq 1 "$n"); do out="$out${out:+,}127.0.0.1:$(client_port "$i")"; done
  echo "$out"
}

# SIGTERM to every node at once (a controlled shutdown needs the quorum: stopping the nodes
# one by one would leave the last ones without it), then SIGKILL what still runs after
# $stop_timeout seconds. Exit status 1 if a node had to be killed.
stop() {
  local i pid pids=() killed=""
  for i in $(seq 1 "$n"); do
    if pid=$(pid_of "$i"); then
      kill -TERM "$pid" 2>/dev/null
      pids[$i]=$pid
    fi
  done
  local deadline=$((SECONDS + stop_timeout))
  for i in "${!pids[@]}"; do
    while kill -0 "${pids[$i]}" 2>/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "cluster.sh: node $i (pid ${pids[$i]}) still running ${stop_timeout}s after SIGTERM; sending SIGKILL" >&2
        kill -KILL "${pids[$i]}" 2>/dev/null
        killed="$killed $i"
        break
      fi
      sleep 0.1
    done
  done
  for i in $(seq 1 "$n"); do rm -f "$dir/node-$i.pid"; done
  echo "cluster.sh: stopped ${#pids[@]} node(s)"
  [ -z "$killed" ]
}

status() {
  local i pid down=0
  for i in $(seq 1 "$n"); do
    if pid=$(pid_of "$i"); then
      echo "node $i: running (pid $pid), client 127.0.0.1:$(client_port "$i"), controller 127.0.0.1:$(controller_port "$i")"
    else
      echo "node $i: not running"
      down=1
    fi
  done
  return "$down"
}

case "$command" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
