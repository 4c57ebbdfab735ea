#!/usr/bin/env bash
# End-to-end broker benchmark with kcat (librdkafka) as the client.
#
# Starts the release broker on a fresh data directory and measures: start-to-ready time, idle
# RSS, produce throughput (1,000,000 x 100 B and 200,000 x 1 KiB records, acks=1 and acks=all),
# consume throughput of the same data, and peak RSS under load. Baseline in the same run: raw
# sequential write of the same bytes to the same filesystem (dd with fdatasync), so the figures
# can be read against what the disk can do.
#
# Usage: benches/scripts/broker.sh [--quick]     (--quick: 10x fewer records, for a smoke run)
set -euo pipefail
cd "$(dirname "$0")/../.."
scale=1
[ "${1:-}" = "--quick" ] && scale=10
port=${WEIR_BENCH_PORT:-19099}
kcat=${KCAT:-kcat}
command -v "$kcat" >/dev/null || { echo "kcat not found (apt-get install kcat)"; exit 1; }

cargo build --release -q -p weir-broker
bin=target/release/weir
data=$(mktemp -d)
work=$(mktemp -d)
log=$work/broker.log
cleanup() {
  [ -n "${pid:-}" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$data" "$work"
}
trap cleanup EXIT

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
now_ns() { date +%s%N; }

# Start-to-ready: from exec to the "weir broker ready" line. (The listener is bound before the
# data is opened and the node joins its metadata quorum, so the first accepted TCP connection
# would come too early.)
t0=$(now_ns)
"$bin" --listeners="PLAINTEXT://127.0.0.1:$port" --log.dirs="$data" --weir.admin.listener=none >"$log" 2>&1 &
pid=$!
until grep -q "weir broker ready" "$log"; do
  kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.001
done
t1=$(now_ns)
ready_ms=$(( (t1 - t0) / 1000000 ))
sleep 1
idle_rss=$(rss_kib "$pid")
echo "ready: ${ready_ms} ms, idle RSS: $((idle_rss / 1024)) MiB ($idle_rss KiB)"

peak=0
sample_rss() { local r; r=$(rss_kib "$pid"); [ "$r" -gt "$peak" ] && peak=$r; return 0; }

# Input files: one record per line (kcat -l), values of the given size.
make_input() { # count size file
  python3 - "$1" "$2" "$3" <<'PY'
import sys
count, size, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
line = (b"x" * (size - 1)) + b"\n"
with open(path, "wb") as f:
    for _ in range(count):
        f.write(line)
PY
}

run_case() { # name count size acks
  local name=$1 count=$(( $2 / scale )) size=$3 acks=$4 topic="bench-$1"
  local input=$work/$name.in
  make_input "$count" "$size" "$input"
  local bytes=$(( count * size ))
  local start end
  start=$(now_ns)
  "$kcat" -b "127.0.0.1:$port" -P -t "$topic" -l "$input" \
    -X acks="$acks" -X linger.ms=5 -X batch.size=1000000 -X queue.buffering.max.messages=1000000 \
    -X enable.idempotence=false 2>>"$log" &
  local kpid=$!
  while kill -0 "$kpid" 2>/dev/null; do sample_rss; sleep 0.2; done
  wait "$kpid"
  end=$(now_ns)
  local secs
  secs=$(python3 -c "print(($end - $start) / 1e9)")
  python3 -c "c=$count; b=$bytes; s=$secs; print(f'produce $1: {c/s:,.0f} records/s, {b/s/1e6:,.1f} MB/s ({c} x $size B, acks=$acks, {s:.2f} s)')"

  start=$(now_ns)
  local got
  got=$("$kcat" -b "127.0.0.1:$port" -C -t "$topic" -o beginning -e -q -f '\n' -X fetch.max.bytes=52428800 2>>"$log" | wc -l)
  end=$(now_ns)
  secs=$(python3 -c "print(($end - $start) / 1e9)")
  python3 -c "c=$got; b=$got*$size; s=$secs; print(f'consume $1: {c/s:,.0f} records/s, {b/s/1e6:,.1f} MB/s ({c} records, {s:.2f} s)')"
  [ "$got" -eq "$count" ] || { echo "consumed $got of $count records"; exit 1; }
  sample_rss
}

run_case small-acks1 1000000 100 1
run_case small-acksall 1000000 100 all
run_case large-acks1 200000 1024 1
run_case large-acksall 200000 1024 all
echo "peak RSS under load: $((peak / 1024)) MiB"

# Baseline: raw sequential write + fdatasync of 200 MB on the same filesystem.
start=$(now_ns)
dd if=/dev/zero of="$data/raw.bin" bs=1M count=$(( 200 / scale )) conv=fdatasync status=none
end=$(now_ns)
python3 -c "s=($end-$start)/1e9; print(f'raw sequential write + fdatasync: {$(( 200 / scale ))*1.048576/s:,.1f} MB/s')"
rm -f "$data/raw.bin"

kill -TERM "$pid"
wait "$pid"
pid=
echo "broker stopped cleanly"
