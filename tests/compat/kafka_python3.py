"""kafka-python 3.x against a running broker.

Produces with every codec kafka-python supports (none, gzip, snappy, lz4, zstd; the idempotent
producer is kafka-python 3's default), with keys, headers and explicit timestamps; consumes half
in a consumer group and commits; a second consumer in the same group resumes at the committed
offset and reads the rest, nothing lost, nothing twice.

Usage: python kafka_python3.py [HOST:PORT]   prints PASS or FAIL, exits 0 on PASS.
"""
import sys
import time
import traceback
import uuid

import kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka import codec as kafka_codec
from kafka.structs import OffsetAndMetadata

BOOTSTRAP = sys.argv[1] if len(sys.argv) > 1 else "localhost:9092"
RUN = uuid.uuid4().hex[:10]
TOPIC = f"compat-kp3-{RUN}"
GROUP = f"compat-kp3-group-{RUN}"
CODECS = {
    None: lambda: True,
    "gzip": kafka_codec.has_gzip,
    "snappy": kafka_codec.has_snappy,
    "lz4": kafka_codec.has_lz4,
    "zstd": kafka_codec.has_zstd,
}
PER_CODEC = 20
BASE_TS = 1_700_000_000_000  # explicit CreateTime timestamps, checked on the way back
PAYLOAD = b"weir compatibility payload " * 4  # compressible, so each codec really compresses


def log(msg):
    print(f"kafka-python-3: {msg}", flush=True)


def fail(msg):
    log(f"FAIL: {msg}")
    sys.exit(1)


def expected_records():
    """(key, value, headers, timestamp) in offset order."""
    out = []
    for c, codec in enumerate(CODECS):
        for i in range(PER_CODEC):
            n = c * PER_CODEC + i
            out.append((
                b"key-%d" % n,
                PAYLOAD + (codec or "none").encode() + b"-%d" % n,
                [("codec", (codec or "none").encode()), ("n", b"%d" % n)],
                BASE_TS + n,
            ))
    return out


def produce(expected):
    for c, codec in enumerate(CODECS):
        if not CODECS[codec]():
            fail(f"the python package for codec {codec} is missing from this venv")
        producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, compression_type=codec,
                                 linger_ms=20, acks="all", request_timeout_ms=15000)
        futures = []
        for i in range(PER_CODEC):
            key, value, headers, ts = expected[c * PER_CODEC + i]
            futures.append(producer.send(TOPIC, key=key, value=value, headers=headers,
                                         timestamp_ms=ts))
        producer.flush(timeout=30)
        for i, f in enumerate(futures):
            md = f.get(timeout=30)
            want = c * PER_CODEC + i
            if md.offset != want or md.partition != 0:
                fail(f"codec {codec}: record {i} acknowledged at {md.partition}/{md.offset}, "
                     f"expected 0/{want}")
        producer.close(timeout=10)
        log(f"produced {PER_CODEC} records with codec {codec or 'none'}")


def consume(consumer, count, deadline_s=40):
    """Polls until `count` records arrived (or the deadline), returns them in order."""
    records = []
    deadline = time.time() + deadline_s
    while len(records) < count and time.time() < deadline:
        batch = consumer.poll(timeout_ms=1000, max_records=count - len(records))
        for recs in batch.values():
            records.extend(recs)
    return records


def check_records(records, expected, first_offset):
    for j, r in enumerate(records):
        offset = first_offset + j
        key, value, headers, ts = expected[offset]
        if r.offset != offset:
            fail(f"record {j}: offset {r.offset}, expected {offset} (lost or duplicated)")
        if r.key != key or r.value != value:
            fail(f"offset {offset}: key/value {r.key!r}/{r.value[:40]!r} differ from what was sent")
        if list(r.headers) != headers:
            fail(f"offset {offset}: headers {r.headers!r}, expected {headers!r}")
        if r.timestamp != ts or r.timestamp_type != 0:
            fail(f"offset {offset}: timestamp {r.timestamp} type {r.timestamp_type}, "
                 f"expected {ts} CreateTime")


def new_consumer():
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=GROUP,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=10000, request_timeout_ms=30000)
    consumer.subscribe([TOPIC])
    return consumer


def main():
    log(f"kafka-python {kafka.__version__}, topic {TOPIC}, group {GROUP}")
    expected = expected_records()
    total = len(expected)
    half = total // 2
    produce(expected)

    tp = TopicPartition(TOPIC, 0)
    first = new_consumer()
    records = consume(first, half)
    if len(records) != half:
        fail(f"first consumer got {len(records)} of {half} records")
    check_records(records, expected, 0)
    first.commit({tp: OffsetAndMetadata(half, "kp3", -1)})
    committed = first.committed(tp)
    if committed != half:
        fail(f"committed offset reads back as {committed}, expected {half}")
    first.close()
    log(f"first consumer read offsets 0..{half - 1} and committed {half}")

    second = new_consumer()
    rest = consume(second, total - half)
    if len(rest) != total - half:
        fail(f"second consumer got {len(rest)} of {total - half} records")
    check_records(rest, expected, half)
    extra = consume(second, 1, deadline_s=2)
    if extra:
        fail(f"second consumer got unexpected extra record at offset {extra[0].offset}")
    second.commit()
    if second.committed(tp) != total:
        fail(f"second commit reads back as {second.committed(tp)}, expected {total}")
    second.close()
    log(f"second consumer resumed at {half} and read the remaining {total - half}")
    log(f"PASS: {total} records over {len(CODECS)} codecs, group commit and resume")


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException as e:  # any client error is a failure with its message
        traceback.print_exc()
        fail(repr(e))
