#!/usr/bin/env bash
# The long version of the replication chaos test: three release-built `weir` nodes,
# replication factor 3, min.insync.replicas=2; idempotent acks=all producers (librdkafka and
# weir-client) write at a steady rate while the leader of partition 0 is killed with kill -9
# every WEIR_CHAOS_KILL_EVERY_SECS (10) and restarted, for WEIR_CHAOS_SECS (300). Prints the
# checker's table: acknowledged, delivery failed, lost, duplicated, out of order, acked
# elsewhere, and the share of 250 ms slots in which produce was acknowledged.
#
#   tests/cluster/chaos.sh            # 5 minutes
#   WEIR_CHAOS_SECS=60 tests/cluster/chaos.sh
#
# CI runs the same test for 24 s inside `cargo test` (crates/weir-broker/tests/replication.rs).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build --release -p weir-broker --bin weir
export WEIR_BIN="$root/target/release/weir"
export WEIR_CHAOS_SECS=${WEIR_CHAOS_SECS:-300}
export WEIR_CHAOS_KILL_EVERY_SECS=${WEIR_CHAOS_KILL_EVERY_SECS:-10}
exec cargo test --release -p weir-broker --test replication acknowledged_records_survive_kill_9_of_leaders -- --nocapture
