#!/usr/bin/env bash
# kcat (Debian's, librdkafka 2.0.2) against a running broker. librdkafka before 2.2 misreads
# ApiVersions responses that carry default-valued tagged fields, so `kcat -L` alone checks that.
# Then: produce with keys and headers with each `-z` codec (and one idempotent run), read it all
# back, consume in a group (`-G`, which commits on exit), produce more, and check that a second
# group run reads only the new records.
#
# Usage: tests/compat/kcat.sh [HOST:PORT]   ($KCAT: the kcat binary, default kcat)
# Prints PASS or FAIL; exits 0 on PASS.
set -euo pipefail

bootstrap="${1:-localhost:9092}"
kcat="${KCAT:-kcat}"
run="$(date +%s)-$$-$RANDOM"
topic="compat-kcat-$run"
group="compat-kcat-group-$run"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log() { echo "kcat: $*"; }
fail() {
    log "FAIL: $*"
    exit 1
}
# Each kcat call is bounded; -q drops kcat's informational lines.
k() { timeout --kill-after=5 30 "$kcat" -b "$bootstrap" -q "$@"; }

log "$("$kcat" -V 2>&1 | sed -n 's/^Version \([^ ]*\) .*librdkafka \([^ ]*\) .*/kcat \1, librdkafka \2/p'), topic $topic, group $group"

# 1. Metadata: ApiVersions + Metadata as librdkafka 2.0.2 reads them.
k -L -t "$topic" >"$work/metadata" 2>&1 || {
    cat "$work/metadata"
    fail "kcat -L failed"
}
grep -q ' 1 brokers:' "$work/metadata" || {
    cat "$work/metadata"
    fail "kcat -L did not list one broker"
}
grep -q "topic \"$topic\" with 1 partitions" "$work/metadata" || {
    cat "$work/metadata"
    fail "kcat -L did not show the auto-created topic $topic"
}
log "kcat -L: one broker, topic $topic auto-created"

# 2. Produce 10 keyed records with a header per codec, then 10 more with idempotence on.
payload="weir compatibility payload weir compatibility payload weir compatibility payload"
: >"$work/expected"
n=0
produce_batch() { # produce_batch LABEL KCAT-ARGS...
    local label="$1" i
    shift
    : >"$work/batch"
    for i in $(seq 1 10); do
        echo "key-$n:$payload-$label-$n" >>"$work/batch"
        echo "key-$n|$payload-$label-$n|codec=$label" >>"$work/expected"
        n=$((n + 1))
    done
    local rc=0
    k -P -t "$topic" -K: -H "codec=$label" -X linger.ms=20 "$@" <"$work/batch" || rc=$?
    [ "$rc" -eq 0 ] || fail "producing with $label failed (exit $rc; 124: timed out)"
}
for codec in none gzip snappy lz4 zstd; do
    if [ "$codec" = none ]; then
        produce_batch none
    else
        produce_batch "$codec" -z "$codec"
    fi
done
produce_batch idempotent -X enable.idempotence=true -z lz4
log "produced $n records (none, gzip, snappy, lz4, zstd, idempotent lz4)"

# 3. Read everything back, in order, with keys and headers.
k -C -t "$topic" -o beginning -e -f '%k|%s|%h\n' >"$work/consumed" 2>"$work/consume.err" || {
    cat "$work/consume.err"
    fail "kcat -C failed"
}
if ! diff -u "$work/expected" "$work/consumed" >"$work/diff"; then
    head -n 20 "$work/diff"
    fail "kcat -C read back something other than what was produced"
fi
log "kcat -C read back all $n records with keys and headers, in order"

# 4. A group consumer reads all and commits on exit; a second run after more records reads only
#    the new ones.
group_read() { # group_read OUT
    local rc=0
    k -G "$group" -X auto.offset.reset=earliest -e -f '%k|%s|%h\n' "$topic" >"$1" \
        2>"$work/group.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        cat "$work/group.err"
        fail "kcat -G failed (exit $rc; 124: no end of partition within 30 s)"
    fi
}
group_read "$work/group1"
if ! diff -u "$work/expected" "$work/group1" >"$work/diff"; then
    head -n 20 "$work/diff"
    fail "the first group run did not read every record exactly once"
fi
first_count=$n
produce_batch after-commit
tail -n 10 "$work/expected" >"$work/expected2"
group_read "$work/group2"
if ! diff -u "$work/expected2" "$work/group2" >"$work/diff"; then
    head -n 20 "$work/diff"
    fail "the second group run did not resume at the committed offset $first_count"
fi
log "group $group: first run read $first_count, second run resumed and read the 10 new ones"
log "PASS: kcat -L, produce with every -z codec and idempotence, consume, group resume"
