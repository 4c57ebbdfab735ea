#!/usr/bin/env bash
# CI: the seed example, verbatim, and real clients against a 3-node Weir cluster (node 1 on
# 127.0.0.1:9092).
#
#   PYTHON3=/path/to/venv/bin/python3 tests/cluster/ci.sh
#
# Needs a built release broker (target/release/weir, or WEIR_BIN) and a python3 with
# kafka-python in $PYTHON3 (its directory goes first on PATH, as check.sh runs `python3`).
# (WEIR_CLUSTER_PORT_OFFSET and SEED_CHECK exist to try it beside a broker that holds 9092.)
# Starts the cluster with cluster.sh in a fresh directory, runs ../shared/seed-example/check.sh
# against node 1, then kafka-python (node 3) and confluent-kafka (node 2) from tests/compat,
# stops the cluster; then runs the seed example once more on a fresh cluster with three replicas
# per partition while a broker is killed with kill -9 (needs kcat to find the leader). Exits
# non-zero if a cluster did not start, a client check failed or a node did not stop on
# SIGTERM. The nodes' logs are printed on failure.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seed=${SEED_CHECK:-$root/../shared/seed-example/check.sh}
export WEIR_BIN=${WEIR_BIN:-$root/target/release/weir}
export WEIR_CLUSTER_DIR=${WEIR_CLUSTER_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/weir-cluster-ci.XXXXXX")}

if [ -z "${PYTHON3:-}" ] || [ ! -x "$PYTHON3" ]; then
  echo "ci.sh: set PYTHON3 to a python3 that has kafka-python (got '${PYTHON3:-}')" >&2
  exit 2
fi
if [ ! -x "$WEIR_BIN" ]; then
  echo "ci.sh: no weir binary at $WEIR_BIN (cargo build --release -p weir-broker)" >&2
  exit 2
fi
if [ ! -f "$seed" ]; then
  echo "ci.sh: no seed example check at $seed" >&2
  exit 2
fi
# check.sh calls `python3`: the venv's comes first.
venv_bin=$(cd "$(dirname "$PYTHON3")" && pwd)
if [ ! -e "$venv_bin/python3" ]; then
  # A PYTHON3 named otherwise (python3.12): give check.sh a python3 that is it.
  shim=$(mktemp -d)
  ln -s "$PYTHON3" "$shim/python3"
  venv_bin="$shim"
fi
export PATH="$venv_bin:$PATH"

cluster="$here/cluster.sh"
print_logs() {
  local log
  for log in "$WEIR_CLUSTER_DIR"/node-*.log; do
    [ -f "$log" ] || continue
    echo "----- $log (without openraft's lines, last 60) -----"
    grep -v ' openraft::' "$log" | tail -n 60
  done
}

stopped=0
cleanup() {
  if [ "$stopped" = 0 ]; then
    "$cluster" stop >/dev/null 2>&1
  fi
}
trap cleanup EXIT

echo "== starting a 3-node cluster ($WEIR_BIN, data in $WEIR_CLUSTER_DIR)"
if ! "$cluster" start 3; then
  echo "== FAILED: the cluster did not start"
  print_logs
  exit 1
fi
"$cluster" status

echo "== seed example against node 1 on 127.0.0.1:$((9092 + ${WEIR_CLUSTER_PORT_OFFSET:-0})) (python3: $(command -v python3))"
bash "$seed" 60
seed_status=$?
if [ "$seed_status" = 0 ]; then
  echo "== seed example: PASSED"
else
  echo "== seed example: FAILED (exit status $seed_status)"
fi

# Real clients bootstrapping from the other nodes: they must find each partition's leader and
# each group's coordinator wherever it is, and admin requests must reach the controller.
offset=${WEIR_CLUSTER_PORT_OFFSET:-0}
clients_status=0
echo "== kafka-python (3.x, groups) through node 3, confluent-kafka and the Java client (transactions) through node 2"
COMPAT_ONLY="kafka-python-3 kafka-python-groups" PYTHON3="$PYTHON3" \
  bash "$root/tests/compat/run.sh" "127.0.0.1:$((9096 + offset))" || clients_status=1
COMPAT_ONLY="confluent-kafka java-txn" PYTHON3="$PYTHON3" \
  bash "$root/tests/compat/run.sh" "127.0.0.1:$((9094 + offset))" || clients_status=1

echo "== stopping the cluster"
"$cluster" stop
stop_status=$?
stopped=1
if [ "$stop_status" != 0 ]; then
  echo "== FAILED: a node did not stop on SIGTERM (it was killed)"
fi

if [ "$seed_status" != 0 ] || [ "$clients_status" != 0 ] || [ "$stop_status" != 0 ]; then
  print_logs
  exit 1
fi
rm -rf "$WEIR_CLUSTER_DIR"

# The seed example again, verbatim, on a fresh cluster whose topics have three replicas, while a
# broker is killed with kill -9 in the middle of it: the leader of user-activity's partition
# (node 1 too, the example's only bootstrap address: the clients know the other brokers by
# then). kafka-python 3.x produces idempotently with acks=all, so all 10 events must arrive.
export WEIR_CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/weir-cluster-ci-kill.XXXXXX")
echo "== starting a 3-node cluster with default.replication.factor=3 (data in $WEIR_CLUSTER_DIR)"
if ! WEIR_CLUSTER_ARGS="--default.replication.factor=3 ${WEIR_CLUSTER_ARGS:-}" "$cluster" start 3; then
  echo "== FAILED: the cluster did not start"
  print_logs
  exit 1
fi
stopped=0
bash "$seed" 90 &
seed_pid=$!
sleep 5
leader=$(kcat -b "127.0.0.1:$((9092 + offset))" -L -J -t user-activity 2>/dev/null | "$PYTHON3" -c '
import json, sys
try:
    print(json.load(sys.stdin)["topics"][0]["partitions"][0]["leader"])
except Exception:
    print("unknown")')
case "$leader" in
  1|2|3) victim=$leader ;;
  *) victim=3 ;;
esac
victim_pid=$(cat "$WEIR_CLUSTER_DIR/node-$victim.pid")
echo "== kill -9 of node $victim (pid $victim_pid; user-activity-0 led by node $leader) while the seed example runs"
kill -9 "$victim_pid"
wait "$seed_pid"
kill_status=$?
if [ "$kill_status" = 0 ]; then
  echo "== seed example with node $victim killed: PASSED"
else
  echo "== seed example with node $victim killed: FAILED (exit status $kill_status)"
fi
"$cluster" stop >/dev/null 2>&1
stopped=1
if [ "$kill_status" != 0 ]; then
  print_logs
  exit 1
fi
rm -rf "$WEIR_CLUSTER_DIR"
echo "== cluster checks (seed example, with and without a broker killed; kafka-python, confluent-kafka): OK"
