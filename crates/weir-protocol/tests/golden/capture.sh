#!/usr/bin/env bash
# Captures golden request frames from real Kafka clients (kafka-python, confluent-kafka, kcat)
# against the `capture` example broker, keeping a small representative set per client:
# the first frame of each (API, version) and the first Produce of each (version, codec).
#
# Usage: crates/weir-protocol/tests/golden/capture.sh   (from anywhere; installs what it needs)
# Environment: PORT (default 19092), VENV (default /tmp/weir-golden-venv).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../../.." && pwd)"
PORT="${PORT:-19092}"
BOOTSTRAP="127.0.0.1:$PORT"
VENV="${VENV:-/tmp/weir-golden-venv}"
RAW="$(mktemp -d /tmp/weir-golden-raw.XXXXXX)"

# --- Tools -----------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import kafka, confluent_kafka' 2>/dev/null; then
    "$VENV/bin/pip" install -q 'kafka-python>=3,<4' confluent-kafka
fi
# Codec packages for kafka-python; a codec whose package will not install is skipped.
if ! "$VENV/bin/python" -c 'import cramjam, snappy, lz4, zstandard' 2>/dev/null; then
    for pkg in cramjam python-snappy lz4 zstandard; do
        "$VENV/bin/pip" install -q "$pkg" || echo "capture.sh: $pkg not installable, codec skipped" >&2
    done
fi
if ! command -v kcat >/dev/null; then
    apt-get update -qq && apt-get install -y -qq kcat
fi
PY="$VENV/bin/python"

# --- Broker ----------------------------------------------------------------------------------
cargo build -q -p weir-protocol --example capture --manifest-path "$ROOT/Cargo.toml"
CAPTURE="$ROOT/target/debug/examples/capture"
BROKER_PID=""
stop_broker() {
    if [ -n "$BROKER_PID" ]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}
trap stop_broker EXIT

# run_client DIR COMMAND...: a fresh broker for one client, then keep a representative set.
run_client() {
    local dir="$1"
    shift
    local raw="$RAW/$dir"
    "$CAPTURE" --listen "$BOOTSTRAP" --out "$raw" 2>"$raw.log" &
    BROKER_PID=$!
    sleep 0.5
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        echo "capture.sh: the capture broker did not start:" >&2
        cat "$raw.log" >&2
        exit 1
    fi
    echo "capture.sh: running $dir" >&2
    if ! "$@"; then
        echo "capture.sh: $dir client failed; broker log:" >&2
        cat "$raw.log" >&2
        exit 1
    fi
    stop_broker
    if grep -q '!!!!!!' "$raw.log"; then
        echo "capture.sh: decode errors for $dir:" >&2
        grep '!!!!!!' "$raw.log" >&2
    fi
    rm -rf "${HERE:?}/$dir"
    mkdir -p "$HERE/$dir"
    "$PY" - "$raw" "$HERE/$dir" <<'EOF'
import shutil, sys
raw, out = sys.argv[1], sys.argv[2]
seen = set()
for line in open(f"{raw}/index.tsv"):
    file, api, version, codec = line.rstrip("\n").split("\t")
    key = (api, version, codec if api == "Produce" else "-")
    if key not in seen:
        seen.add(key)
        shutil.copy(f"{raw}/{file}", f"{out}/{file}")
print(f"kept {len(seen)} frames in {out}", file=sys.stderr)
EOF
}

KP_VERSION="$("$PY" -c 'import kafka; print(kafka.__version__)')"
CK_VERSION="$("$PY" -c 'import confluent_kafka as c; print(c.__version__)')"
CK_LIBRDKAFKA="$("$PY" -c 'import confluent_kafka as c; print(c.libversion()[0])')"
KCAT_VERSION="$(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\) .*librdkafka \([^ ]*\) .*/\1-librdkafka-\2/p')"

KP_DIR="kafka-python-$KP_VERSION"
CK_DIR="confluent-kafka-$CK_VERSION"
KCAT_DIR="kcat-$KCAT_VERSION"

run_client "$KP_DIR" "$PY" "$HERE/kafka_python_client.py" "$BOOTSTRAP"
run_client "$CK_DIR" "$PY" "$HERE/confluent_kafka_client.py" "$BOOTSTRAP"

kcat_scenario() {
    local payload codec
    payload="$(printf 'weir golden bytes %.0s' 1 2 3 4 5 6 7 8)"
    for codec in none gzip snappy lz4 zstd; do
        for i in 1 2 3 4 5 6 7 8 9 10; do
            echo "key-$i:$payload$i"
        done | timeout 30 kcat -b "$BOOTSTRAP" -P -t kc-topic -K: -H h=v \
            -X compression.codec="$codec" -X linger.ms=20
    done
    timeout 30 kcat -b "$BOOTSTRAP" -C -t kc-topic -o beginning -e -q >/dev/null
    # A group consumer: JoinGroup/SyncGroup/OffsetCommit/LeaveGroup; it exits at end of topic.
    timeout 30 kcat -b "$BOOTSTRAP" -G kc-group -X auto.offset.reset=earliest -e -q kc-topic \
        >/dev/null
}
run_client "$KCAT_DIR" kcat_scenario

cat >"$HERE/README.md" <<EOF
# Golden request frames from real Kafka clients

Each \`.bin\` file is one request frame body exactly as a client sent it (without the 4-byte
size prefix), named \`<seq>-<ApiName>-v<version>.bin\`. \`tests/golden.rs\` decodes every file
and re-encodes it byte for byte.

Captured $(date -u +%Y-%m-%d) by \`crates/weir-protocol/tests/golden/capture.sh\`, which runs
each client against \`cargo run -p weir-protocol --example capture -- --listen $BOOTSTRAP --out DIR\`
and keeps the first frame of each (API, version) and the first Produce of each codec
(transactional batches counted apart).

| folder | client | scenario |
|---|---|---|
| \`$KP_DIR/\` | kafka-python $KP_VERSION (Python $("$PY" -c 'import platform; print(platform.python_version())')) | \`kafka_python_client.py\`: a producer per codec (none, gzip, snappy, lz4, zstd) with keys and headers; a group consumer that commits; a transactional producer sending the group's offsets (consume-transform-produce); admin: create/describe-configs/delete topics, list/describe groups, group offsets |
| \`$CK_DIR/\` | confluent-kafka $CK_VERSION, librdkafka $CK_LIBRDKAFKA | \`confluent_kafka_client.py\`: a producer per codec with keys and headers; a group consumer that commits; a transactional producer sending the group's offsets; admin: create/describe-configs/delete topics, list/describe groups |
| \`$KCAT_DIR/\` | kcat ${KCAT_VERSION%%-librdkafka-*}, librdkafka ${KCAT_VERSION##*-librdkafka-} (Debian package) | \`kcat -P -K: -H h=v -X compression.codec=<codec>\` per codec, \`kcat -C -o beginning -e\`, \`kcat -G kc-group -e\` |

To refresh: \`bash crates/weir-protocol/tests/golden/capture.sh\`, then
\`cargo test -p weir-protocol --test golden\`.
EOF
du -sh --apparent-size "$HERE"
echo "capture.sh: done; raw captures in $RAW" >&2
