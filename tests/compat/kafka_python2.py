"""kafka-python 2.0.2 against a running broker: basic produce, and consume in a group with a
commit. kafka-python 2.0.2 detects the broker version itself (`api_version` left unset): it
sends ApiVersions v0 and infers a Kafka release from the highest versions advertised, then
speaks the old, non-flexible request versions of that release.

Usage: python kafka_python2.py [HOST:PORT]   prints PASS or FAIL, exits 0 on PASS.
"""
import sys
import time
import traceback
import uuid

import kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

BOOTSTRAP = sys.argv[1] if len(sys.argv) > 1 else "localhost:9092"
RUN = uuid.uuid4().hex[:10]
TOPIC = f"compat-kp2-{RUN}"
GROUP = f"compat-kp2-group-{RUN}"
COUNT = 20


def log(msg):
    print(f"kafka-python-2.0.2: {msg}", flush=True)


def fail(msg):
    log(f"FAIL: {msg}")
    sys.exit(1)


def main():
    log(f"kafka-python {kafka.__version__}, python {sys.version.split()[0]}, topic {TOPIC}")
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=10,
                             request_timeout_ms=15000)
    log(f"auto-detected api_version {producer.config['api_version']}")
    futures = [producer.send(TOPIC, key=b"k%d" % i, value=b"v%d" % i) for i in range(COUNT)]
    producer.flush(timeout=30)
    offsets = [f.get(timeout=30).offset for f in futures]
    if offsets != list(range(COUNT)):
        fail(f"acknowledged offsets {offsets}, expected 0..{COUNT - 1}")
    producer.close(timeout=10)
    log(f"produced {COUNT} records")

    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=GROUP,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=10000, request_timeout_ms=30000)
    consumer.subscribe([TOPIC])
    records = []
    deadline = time.time() + 40
    while len(records) < COUNT and time.time() < deadline:
        for recs in consumer.poll(timeout_ms=1000).values():
            records.extend(recs)
    got = [(r.offset, r.key, r.value) for r in records]
    want = [(i, b"k%d" % i, b"v%d" % i) for i in range(COUNT)]
    if got != want:
        fail(f"consumed {got[:5]}... ({len(got)} records), expected {want[:5]}... ({COUNT})")
    tp = TopicPartition(TOPIC, 0)
    consumer.commit({tp: OffsetAndMetadata(COUNT, "")})
    if consumer.committed(tp) != COUNT:
        fail(f"committed offset reads back as {consumer.committed(tp)}, expected {COUNT}")
    consumer.close()
    log(f"PASS: produced and consumed {COUNT} records in group {GROUP}, committed {COUNT}")


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException as e:  # any client error is a failure with its message
        traceback.print_exc()
        fail(repr(e))
