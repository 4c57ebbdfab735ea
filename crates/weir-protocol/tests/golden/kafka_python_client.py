"""kafka-python scenario for capture.sh: a producer per codec, then a group consumer that commits."""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

BOOTSTRAP = sys.argv[1]
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]
PAYLOAD = b"weir golden bytes " * 8  # compressible, so every codec really compresses

total = 0
for codec in CODECS:
    try:
        producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, compression_type=codec, linger_ms=20)
    except Exception as e:  # a codec whose python package is missing
        print(f"kafka-python: skipping codec {codec}: {e}", file=sys.stderr)
        continue
    for i in range(10):
        producer.send("kp-topic", key=b"key-%d" % i, value=PAYLOAD + b"%d" % i,
                      headers=[("h", b"v%d" % i)])
    producer.flush()
    producer.close()
    total += 10
    print(f"kafka-python: produced 10 with {codec}", file=sys.stderr)

consumer = KafkaConsumer("kp-topic", bootstrap_servers=BOOTSTRAP, group_id="kp-group",
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         consumer_timeout_ms=10000)
seen = 0
for _ in consumer:
    seen += 1
    if seen >= total:
        break
consumer.commit()

# Consume-transform-produce: a transactional producer that commits the group's offsets.
try:
    txn = KafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id="kp-txn")
    txn.init_transactions()
    txn.begin_transaction()
    txn.send("kp-topic", key=b"key-txn", value=PAYLOAD + b"txn", headers=[("h", b"txn")])
    txn.send_offsets_to_transaction(
        {TopicPartition("kp-topic", 0): OffsetAndMetadata(seen, "", -1)},
        consumer.group_metadata())
    txn.commit_transaction()
    txn.close()
except Exception as e:
    print(f"kafka-python: transaction: {e!r}", file=sys.stderr)
consumer.close()
print(f"kafka-python: consumed {seen}/{total}", file=sys.stderr)

# Admin requests; the capture broker answers them minimally, so failures are only reported.
admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=5000)
for name, call in [
    ("create_topics", lambda: admin.create_topics(
        [NewTopic("kp-admin", 1, 1, topic_configs={"retention.ms": "60000"})])),
    ("describe_configs", lambda: admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, "kp-admin")])),
    ("list_groups", admin.list_groups),
    ("describe_groups", lambda: admin.describe_groups(["kp-group"])),
    ("list_group_offsets", lambda: admin.list_group_offsets("kp-group")),
    ("delete_topics", lambda: admin.delete_topics(["kp-admin"])),
]:
    try:
        call()
    except Exception as e:
        print(f"kafka-python: admin {name}: {e!r}", file=sys.stderr)
admin.close()
sys.exit(0 if seen == total else 1)
