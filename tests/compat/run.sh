#!/usr/bin/env bash
# Runs every client compatibility check in this folder against a running broker and prints a
# summary; exits non-zero if any check fails. Installs nothing: .ci/run installs the tools.
#
# Usage: tests/compat/run.sh [HOST:PORT]        (default localhost:9092)
# Environment:
#   PYTHON3       python with kafka-python 3.x, confluent-kafka and the codec packages
#                 (lz4, python-snappy/cramjam, zstandard)              default: python3
#   PYTHON3_KP2   python with kafka-python 2.0.2                         default: python3
#   KCAT          kcat from Debian (librdkafka 2.0.2)                    default: kcat
#   NODE          node with kafkajs 2.2.4 reachable (NODE_PATH)          default: node
#   JAVA, MVN     Java 17 and Maven for the Java client (java/run.sh)    default: java, mvn
#   COMPAT_TIMEOUT  seconds each check may take                          default: 120
#   COMPAT_ONLY   space-separated check names to run (default: all)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bootstrap="${1:-localhost:9092}"
python3_bin="${PYTHON3:-python3}"
python3_kp2="${PYTHON3_KP2:-python3}"
kcat_bin="${KCAT:-kcat}"
node_bin="${NODE:-node}"
limit="${COMPAT_TIMEOUT:-120}"
only="${COMPAT_ONLY:-}"
export KCAT="$kcat_bin" PYTHONUNBUFFERED=1 KAFKAJS_NO_PARTITIONER_WARNING=1

checks=(
    "kafka-python-3|$python3_bin $here/kafka_python3.py $bootstrap"
    "kafka-python-groups|$python3_bin $here/kafka_python_groups.py $bootstrap"
    "kafka-python-log-dirs|$python3_bin $here/kafka_python_log_dirs.py $bootstrap"
    "kafka-python-txn|$python3_bin $here/kafka_python_txn.py $bootstrap"
    "kafka-python-2.0.2|$python3_kp2 $here/kafka_python2.py $bootstrap"
    "confluent-kafka|$python3_bin $here/confluent.py $bootstrap"
    "confluent-kafka-txn|$python3_bin $here/confluent_txn.py $bootstrap"
    "kcat|bash $here/kcat.sh $bootstrap"
    "kafkajs|$node_bin $here/kafkajs.js $bootstrap"
    "kafkajs-txn|$node_bin $here/kafkajs_txn.js $bootstrap"
    "java-txn|bash $here/java/run.sh $bootstrap"
)

passed=()
failed=()
for entry in "${checks[@]}"; do
    name="${entry%%|*}"
    cmd="${entry#*|}"
    if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then
        continue
    fi
    echo
    echo "--- $name: $cmd (timeout ${limit}s)"
    started=$(date +%s)
    rc=0
    # shellcheck disable=SC2086 # cmd is a word list built above
    timeout --kill-after=10 "$limit" $cmd || rc=$?
    took=$(( $(date +%s) - started ))
    if [ "$rc" -eq 0 ]; then
        passed+=("$name")
        echo "--- $name: PASS (${took}s)"
    else
        [ "$rc" -eq 124 ] && echo "--- $name: timed out after ${limit}s"
        failed+=("$name")
        echo "--- $name: FAIL (exit $rc, ${took}s)"
    fi
done

echo
echo "=== compatibility summary against $bootstrap"
for name in "${passed[@]}"; do echo "PASS  $name"; done
for name in "${failed[@]}"; do echo "FAIL  $name"; done
echo "compat: ${#passed[@]} passed, ${#failed[@]} failed"
[ "${#failed[@]}" -eq 0 ]
