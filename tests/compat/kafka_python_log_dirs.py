"""kafka-python 3.x admin: describe_log_dirs (DescribeLogDirs) and describe_topic_partitions
(DescribeTopicPartitions, KIP-966) against a running broker.

Creates a 5-partition topic and produces to partition 0; the broker's log directories list the
topic's partitions, partition 0 larger than the others, with the directory's volume sizes; a
describe by topic/partition returns just those. describe_topic_partitions pages the topic 2, 2
and 1 partitions at a time following next_cursor, and reports an unknown topic's error.

Usage: python kafka_python_log_dirs.py [HOST:PORT]   prints PASS or FAIL, exits 0 on PASS.
"""
import sys
import time
import traceback
import uuid

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

BOOTSTRAP = sys.argv[1] if len(sys.argv) > 1 else "localhost:9092"
RUN = uuid.uuid4().hex[:10]
TOPIC = f"compat-logdirs-{RUN}"
UNKNOWN_TOPIC_OR_PARTITION = 3


def log(msg):
    print(f"kafka-python-log-dirs: {msg}", flush=True)


def fail(msg):
    log(f"FAIL: {msg}")
    sys.exit(1)


def sizes(described, topic):
    """{partition: size} of `topic` over every log directory of every broker."""
    out = {}
    for broker in described:
        for log_dir in broker["log_dirs"]:
            if log_dir["error_code"] != 0:
                fail(f"log dir {log_dir['log_dir']} has error {log_dir['error_code']}")
            for t in log_dir["topics"]:
                if t["name"] != topic:
                    continue
                for p in t["partitions"]:
                    if p["offset_lag"] != 0 or p["is_future_key"]:
                        fail(f"unexpected lag or future log: {p}")
                    out[p["partition_index"]] = p["partition_size"]
    return out


def log_dirs(admin):
    admin.create_topics([NewTopic(TOPIC, num_partitions=5, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP)
    for i in range(20):
        producer.send(TOPIC, value=b"log dir payload %d" % i, partition=0)
    producer.flush()
    producer.close()

    described = admin.describe_log_dirs()
    if not described or not described[0]["log_dirs"]:
        fail(f"no log directories: {described}")
    log_dir = described[0]["log_dirs"][0]
    if "total_bytes" in log_dir and not (0 <= log_dir["usable_bytes"] <= log_dir["total_bytes"]):
        fail(f"volume sizes: {log_dir}")
    all_sizes = sizes(described, TOPIC)
    if sorted(all_sizes) != [0, 1, 2, 3, 4]:
        fail(f"partitions listed: {all_sizes}")
    if not all_sizes[0] > 0 or any(all_sizes[p] != 0 for p in range(1, 5)):
        fail(f"sizes after producing to partition 0: {all_sizes}")
    log(f"ok: describe_log_dirs lists {len(all_sizes)} partitions in "
        f"{log_dir['log_dir']}, partition 0 holds {all_sizes[0]} bytes")

    some = sizes(admin.describe_log_dirs({TOPIC: [0, 3]}), TOPIC)
    if sorted(some) != [0, 3]:
        fail(f"describe by partition returned {some}")
    log("ok: describe_log_dirs by partition returns only those")


def topic_partitions(admin):
    pages, cursor = [], None
    while True:
        page = admin.describe_topic_partitions([TOPIC], response_partition_limit=2, cursor=cursor)
        topic = page["topics"][0]
        if topic["error_code"] != 0 or topic["name"] != TOPIC:
            fail(f"page: {page}")
        for p in topic["partitions"]:
            if p["leader_id"] < 0 or not p["replica_nodes"] or not p["isr_nodes"]:
                fail(f"partition without a leader or replicas: {p}")
        pages.append([p["partition_index"] for p in topic["partitions"]])
        cursor = page["next_cursor"]
        if cursor is None or len(pages) > 5:
            break
    if pages != [[0, 1], [2, 3], [4]]:
        fail(f"pages: {pages}")
    log(f"ok: describe_topic_partitions pages {pages}")

    ghost = f"compat-ghost-{RUN}"
    page = admin.describe_topic_partitions([ghost])
    if [(t["name"], t["error_code"]) for t in page["topics"]] != [(ghost, UNKNOWN_TOPIC_OR_PARTITION)]:
        fail(f"unknown topic: {page}")
    log("ok: describe_topic_partitions reports an unknown topic")


def main():
    started = time.time()
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        log_dirs(admin)
        topic_partitions(admin)
        admin.delete_topics([TOPIC])
    finally:
        admin.close()
    log(f"PASS ({time.time() - started:.1f}s)")


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception:
        traceback.print_exc()
        fail("unexpected exception")
