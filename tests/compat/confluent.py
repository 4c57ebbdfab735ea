"""confluent-kafka (librdkafka) against a running broker.

An idempotent producer per codec (none, gzip, snappy, lz4, zstd) with keys, headers and explicit
timestamps; a consumer group that reads half, commits, and a second consumer that resumes at
the committed offset and reads the rest exactly once; admin: create a topic with partitions and
a config, describe its configs, add partitions, delete it.

Usage: python confluent.py [HOST:PORT]   prints PASS or FAIL, exits 0 on PASS.
"""
import sys
import time
import traceback
import uuid

import confluent_kafka
from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

BOOTSTRAP = sys.argv[1] if len(sys.argv) > 1 else "localhost:9092"
RUN = uuid.uuid4().hex[:10]
TOPIC = f"compat-ck-{RUN}"
GROUP = f"compat-ck-group-{RUN}"
ADMIN_TOPIC = f"compat-ck-admin-{RUN}"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 20
BASE_TS = 1_700_000_000_000
PAYLOAD = b"weir compatibility payload " * 4  # compressible: librdkafka sends raw what won't shrink


def log(msg):
    print(f"confluent-kafka: {msg}", flush=True)


class CheckFailed(Exception):
    pass


def fail(msg):
    raise CheckFailed(msg)


def expected_records():
    out = []
    for c, codec in enumerate(CODECS):
        for i in range(PER_CODEC):
            n = c * PER_CODEC + i
            out.append((b"key-%d" % n, PAYLOAD + codec.encode() + b"-%d" % n,
                        [("codec", codec.encode()), ("n", b"%d" % n)], BASE_TS + n))
    return out


def produce(expected):
    for c, codec in enumerate(CODECS):
        producer = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True,
                             "compression.codec": codec, "linger.ms": 20,
                             "message.timeout.ms": 30000})
        reports = []

        def on_delivery(err, msg, reports=reports):
            reports.append((err, msg.partition(), msg.offset()))

        for i in range(PER_CODEC):
            key, value, headers, ts = expected[c * PER_CODEC + i]
            producer.produce(TOPIC, key=key, value=value, headers=headers, timestamp=ts,
                             on_delivery=on_delivery)
        left = producer.flush(40)
        if left:
            fail(f"codec {codec}: {left} records not delivered")
        want = [(None, 0, c * PER_CODEC + i) for i in range(PER_CODEC)]
        if reports != want:
            fail(f"codec {codec}: delivery reports {reports[:3]}..., expected {want[:3]}...")
        log(f"produced {PER_CODEC} records with codec {codec} (idempotent)")


def new_consumer():
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": GROUP,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 10000})
    consumer.subscribe([TOPIC])
    return consumer


def consume(consumer, count, deadline_s=40):
    records = []
    deadline = time.time() + deadline_s
    while len(records) < count and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            log(f"consumer error: {msg.error()}")
            continue
        records.append(msg)
    return records


def check_records(records, expected, first_offset):
    for j, m in enumerate(records):
        offset = first_offset + j
        key, value, headers, ts = expected[offset]
        if m.offset() != offset:
            fail(f"record {j}: offset {m.offset()}, expected {offset} (lost or duplicated)")
        if m.key() != key or m.value() != value:
            fail(f"offset {offset}: key/value differ from what was sent: {m.key()!r}")
        if m.headers() != headers:
            fail(f"offset {offset}: headers {m.headers()!r}, expected {headers!r}")
        if m.timestamp() != (TIMESTAMP_CREATE_TIME, ts):
            fail(f"offset {offset}: timestamp {m.timestamp()}, expected CreateTime {ts}")


def committed(consumer):
    return consumer.committed([TopicPartition(TOPIC, 0)], timeout=15)[0].offset


def groups(expected):
    total = len(expected)
    half = total // 2
    first = new_consumer()
    records = consume(first, half)
    if len(records) != half:
        fail(f"first consumer got {len(records)} of {half} records")
    check_records(records, expected, 0)
    first.commit(offsets=[TopicPartition(TOPIC, 0, half)], asynchronous=False)
    if committed(first) != half:
        fail(f"committed offset reads back as {committed(first)}, expected {half}")
    first.close()
    log(f"first consumer read offsets 0..{half - 1} and committed {half}")

    second = new_consumer()
    rest = consume(second, total - half)
    if len(rest) != total - half:
        fail(f"second consumer got {len(rest)} of {total - half} records")
    check_records(rest, expected, half)
    extra = consume(second, 1, deadline_s=2)
    if extra:
        fail(f"second consumer got an extra record at offset {extra[0].offset()}")
    second.commit(asynchronous=False)
    if committed(second) != total:
        fail(f"second commit reads back as {committed(second)}, expected {total}")
    second.close()
    log(f"second consumer resumed at {half} and read the remaining {total - half}")


def wait_for(what, predicate, deadline_s=15):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    fail(f"timed out waiting until {what}")


def admin():
    client = AdminClient({"bootstrap.servers": BOOTSTRAP})

    def partitions():
        topic = client.list_topics(timeout=10).topics.get(ADMIN_TOPIC)
        return None if topic is None or topic.error else len(topic.partitions)

    new = NewTopic(ADMIN_TOPIC, num_partitions=3, replication_factor=1,
                   config={"retention.ms": "3600000", "cleanup.policy": "delete"})
    client.create_topics([new], request_timeout=15)[ADMIN_TOPIC].result(timeout=20)
    wait_for(f"{ADMIN_TOPIC} has 3 partitions", lambda: partitions() == 3)
    log(f"created {ADMIN_TOPIC} with 3 partitions")

    # Creating it again is TOPIC_ALREADY_EXISTS.
    try:
        client.create_topics([new], request_timeout=15)[ADMIN_TOPIC].result(timeout=20)
        fail("creating an existing topic succeeded")
    except confluent_kafka.KafkaException as e:
        if e.args[0].code() != confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS:
            fail(f"creating an existing topic: {e!r}, expected TOPIC_ALREADY_EXISTS")

    resource = ConfigResource("topic", ADMIN_TOPIC)
    configs = client.describe_configs([resource], request_timeout=15)[resource].result(timeout=20)
    retention = configs.get("retention.ms")
    if retention is None or retention.value != "3600000":
        fail(f"describe_configs retention.ms = {retention!r}, expected 3600000")
    log(f"describe_configs: {len(configs)} entries, retention.ms={retention.value}")

    client.create_partitions([NewPartitions(ADMIN_TOPIC, 4)],
                             request_timeout=15)[ADMIN_TOPIC].result(timeout=20)
    wait_for(f"{ADMIN_TOPIC} has 4 partitions", lambda: partitions() == 4)
    log("create_partitions: 3 -> 4")

    client.delete_topics([ADMIN_TOPIC], request_timeout=15)[ADMIN_TOPIC].result(timeout=20)
    wait_for(f"{ADMIN_TOPIC} is gone",
             lambda: ADMIN_TOPIC not in client.list_topics(timeout=10).topics)
    log(f"deleted {ADMIN_TOPIC}")


def main():
    log(f"confluent-kafka {confluent_kafka.__version__}, librdkafka "
        f"{confluent_kafka.libversion()[0]}, topic {TOPIC}, group {GROUP}")
    expected = expected_records()
    # Each part reports on its own, so a broken group path does not hide the admin result.
    parts = [("produce", lambda: produce(expected)), ("groups", lambda: groups(expected)),
             ("admin", admin)]
    failed = []
    for name, part in parts:
        if name in failed:
            continue
        try:
            part()
            log(f"part {name}: ok")
        except BaseException as e:  # any client error is a failure with its message
            if not isinstance(e, CheckFailed):
                traceback.print_exc()
            log(f"part {name}: FAIL: {e!r}")
            failed.append(name)
            if name == "produce":  # the group part reads what produce wrote
                failed.append("groups")
    if failed:
        log(f"FAIL: {', '.join(failed)}")
        sys.exit(1)
    log(f"PASS: {len(expected)} idempotent records over {len(CODECS)} codecs, group commit and "
        "resume, admin create/describe-configs/create-partitions/delete")


if __name__ == "__main__":
    main()
