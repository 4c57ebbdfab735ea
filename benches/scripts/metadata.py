#!/usr/bin/env python3
"""Metadata operation latency through a real client: CreateTopics one at a time (each waits
for its answer, which Weir gives once the change is committed in the metadata quorum and
published on the broker that took the request), then DeleteTopics the same way.

    python3 benches/scripts/metadata.py --bootstrap 127.0.0.1:9092 --topics 200

Needs confluent-kafka (librdkafka). Prints p50/p99/max per operation in milliseconds.
"""

import argparse
import statistics
import sys
import time
import uuid

from confluent_kafka.admin import AdminClient, NewTopic


def percentile(samples, p):
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


def timed(admin, futures_of):
    started = time.perf_counter()
    for future in futures_of().values():
        future.result(timeout=30)
    return (time.perf_counter() - started) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topics", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{i}" for i in range(args.topics)]
    created = [
        timed(admin, lambda n=name: admin.create_topics(
            [NewTopic(n, num_partitions=args.partitions, replication_factor=1)],
            operation_timeout=30))
        for name in names
    ]
    deleted = [
        timed(admin, lambda n=name: admin.delete_topics([n], operation_timeout=30))
        for name in names
    ]
    for label, samples in (("create-topic", created), ("delete-topic", deleted)):
        print(f"{label}: n={len(samples)} p50={statistics.median(samples):.2f} ms "
              f"p99={percentile(samples, 99):.2f} ms max={max(samples):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
