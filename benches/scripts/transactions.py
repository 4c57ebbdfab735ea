#!/usr/bin/env python3
"""Transactional produce and read_committed consume against idempotent produce and
read_uncommitted consume, on one release `weir` node, measured in the same run through
librdkafka (confluent-kafka):

1. idempotent produce (acks=all) of N records of 1 KiB — the baseline;
2. the same records in transactions of 100 records, then of 10,000 (init_transactions once,
   begin / produce / commit per transaction);
3. reading all of it back from offset 0 with isolation.level read_uncommitted and
   read_committed.

    cargo build --release -p weir-broker
    python3 benches/scripts/transactions.py [--weir BIN] [--records N]

Prints a markdown table with each rate and its ratio to the baseline. Needs confluent-kafka.
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from replication import Cluster, load, log  # noqa: E402

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

RECORD = 1024


def create_topic(bootstrap):
    name = f"txn-bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, 1, 1)]).values():
        f.result(30)
    return name


def produce(bootstrap, topic, count, per_transaction):
    """Produces `count` records; per_transaction None = idempotent, no transactions."""
    config = {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
              "enable.idempotence": True, "queue.buffering.max.messages": 200_000}
    if per_transaction:
        config["transactional.id"] = f"bench-{uuid.uuid4().hex[:8]}"
    p = Producer(config)
    failed = []

    def delivered(err, _msg):
        if err is not None:
            failed.append(err)

    value = b"x" * RECORD
    if per_transaction:
        p.init_transactions(30)
    started = time.perf_counter()
    sent = 0
    while sent < count:
        batch = min(per_transaction or count, count - sent)
        if per_transaction:
            p.begin_transaction()
        for i in range(batch):
            while True:
                try:
                    p.produce(topic, value, key=str(sent + i).encode(), on_delivery=delivered)
                    break
                except BufferError:
                    p.poll(0.001)
            p.poll(0)
        if per_transaction:
            p.commit_transaction(60)
        sent += batch
    left = p.flush(120)
    seconds = time.perf_counter() - started
    if failed or left:
        raise SystemExit(f"produce failed: {len(failed)} errors, {left} unacknowledged")
    return count / seconds


def consume(bootstrap, topic, count, isolation):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "isolation.level": isolation,
                  "fetch.max.bytes": 52428800})
    c.assign([TopicPartition(topic, 0, 0)])
    started = time.perf_counter()
    got = 0
    deadline = started + 300
    while got < count and time.perf_counter() < deadline:
        for m in c.consume(10_000, 1.0):
            if not m.error():
                got += 1
    seconds = time.perf_counter() - started
    c.close()
    if got < count:
        raise SystemExit(f"read {got} of {count} records with {isolation}")
    return count / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weir", default=os.environ.get("WEIR_BIN", "target/release/weir"))
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--port-offset", type=int, default=700)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    root = tempfile.mkdtemp(prefix="weir-txn-bench-")
    cluster = Cluster(os.path.abspath(args.weir), root, 1, args.port_offset,
                      {"transaction.state.log.num.partitions": "4"})
    rows = []
    try:
        cluster.start()
        bootstrap = cluster.bootstrap
        n = args.records
        print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}, load at start: {load():.2f}, "
              f"{n:,} records of 1 KiB, one partition, one node, acks=all")
        topic = create_topic(bootstrap)
        base = produce(bootstrap, topic, n, None)
        rows.append(("idempotent produce (baseline)", base, base))
        log(f"idempotent {base:,.0f}/s")
        for per in (100, 10_000):
            t = create_topic(bootstrap)
            rate = produce(bootstrap, t, n, per)
            rows.append((f"transactions of {per:,} records", rate, base))
            log(f"transactions of {per} {rate:,.0f}/s")
            if per == 10_000:
                uncommitted = consume(bootstrap, t, n, "read_uncommitted")
                committed = consume(bootstrap, t, n, "read_committed")
                rows.append(("consume read_uncommitted (baseline)", uncommitted, uncommitted))
                rows.append(("consume read_committed", committed, uncommitted))
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    print("\n| case | records/s | MB/s | ratio to its baseline |\n|---|---|---|---|")
    for name, rate, baseline in rows:
        print(f"| {name} | {rate:,.0f} | {rate * RECORD / 1e6:.1f} | {rate / baseline:.2f} |")
    print(f"\nload at end: {load():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
