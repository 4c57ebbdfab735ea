#!/usr/bin/env bash
# The long version of the transactions checker (Jepsen style): three release-built `weir`
# nodes, replication factor 3, min.insync.replicas=2; an idempotent producer feeds an input
# topic while three librdkafka workers in one consumer group consume, transform and produce in
# transactions with send_offsets_to_transaction (every fifth aborted on purpose), and a seeded
# choice of node is killed with kill -9 every WEIR_TXN_CHAOS_KILL_EVERY_SECS (6) and restarted,
# for WEIR_TXN_CHAOS_SECS (300). Prints the checker's table: no aborted read, no lost write, no
# duplicate, outputs in input order, committed transactions visible, offsets at the input's end.
#
#   tests/cluster/txn_chaos.sh                                   # 5 minutes
#   WEIR_TXN_CHAOS_SECS=60 WEIR_TXN_CHAOS_SEED=42 tests/cluster/txn_chaos.sh
#
# CI runs the same test for 24 s inside `cargo test` (crates/weir-broker/tests/txn_chaos.rs).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build --release -p weir-broker --bin weir
export WEIR_BIN="$root/target/release/weir"
export WEIR_TXN_CHAOS_SECS=${WEIR_TXN_CHAOS_SECS:-300}
export WEIR_TXN_CHAOS_KILL_EVERY_SECS=${WEIR_TXN_CHAOS_KILL_EVERY_SECS:-6}
exec cargo test --release -p weir-broker --test txn_chaos -- --nocapture
