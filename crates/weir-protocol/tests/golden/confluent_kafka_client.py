"""confluent-kafka (librdkafka) scenario for capture.sh: a producer per codec with keys and
headers, then a group consumer that commits."""
import sys
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

BOOTSTRAP = sys.argv[1]
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PAYLOAD = b"weir golden bytes " * 8  # compressible: librdkafka sends a batch raw if it does not shrink

total = 0
for codec in CODECS:
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "compression.codec": codec,
                         "linger.ms": 20})
    for i in range(10):
        producer.produce("ck-topic", key=b"key-%d" % i, value=PAYLOAD + b"%d" % i,
                         headers=[("h", b"v%d" % i)])
    if producer.flush(15) != 0:
        print(f"confluent-kafka: {codec} not flushed", file=sys.stderr)
        sys.exit(1)
    total += 10
    print(f"confluent-kafka: produced 10 with {codec}", file=sys.stderr)

consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "ck-group",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
consumer.subscribe(["ck-topic"])
seen = 0
deadline = time.time() + 30
while seen < total and time.time() < deadline:
    msg = consumer.poll(1.0)
    if msg is None or msg.error():
        continue
    seen += 1
consumer.commit(asynchronous=False)

# Consume-transform-produce: a transactional producer that commits the group's offsets.
try:
    txn = Producer({"bootstrap.servers": BOOTSTRAP, "transactional.id": "ck-txn",
                    "linger.ms": 5})
    txn.init_transactions(15)
    txn.begin_transaction()
    txn.produce("ck-topic", key=b"key-txn", value=PAYLOAD + b"txn", headers=[("h", b"txn")])
    txn.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                    consumer.consumer_group_metadata(), 15)
    txn.commit_transaction(15)
except Exception as e:
    print(f"confluent-kafka: transaction: {e!r}", file=sys.stderr)
consumer.close()
print(f"confluent-kafka: consumed {seen}/{total}", file=sys.stderr)

# Admin requests; the capture broker answers them minimally, so failures are only reported.
admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
for name, call in [
    ("create_topics", lambda: admin.create_topics(
        [NewTopic("ck-admin", 1, 1, config={"retention.ms": "60000"})], request_timeout=5)),
    ("describe_configs", lambda: admin.describe_configs(
        [ConfigResource("topic", "ck-admin")], request_timeout=5)),
    ("list_consumer_groups", lambda: admin.list_consumer_groups(request_timeout=5)),
    ("describe_consumer_groups", lambda: admin.describe_consumer_groups(
        ["ck-group"], request_timeout=5)),
    ("delete_topics", lambda: admin.delete_topics(["ck-admin"], request_timeout=5)),
]:
    try:
        result = call()
        futures = result.values() if isinstance(result, dict) else [result]
        for f in futures:
            f.result(timeout=10)
    except Exception as e:
        print(f"confluent-kafka: admin {name}: {e!r}", file=sys.stderr)
sys.exit(0 if seen == total else 1)
