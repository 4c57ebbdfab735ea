"""confluent-kafka (librdkafka) scenario for capture.sh: a producer per codec with keys and
headers, then a group consumer that commits."""
import sys
import time

from confluent_kafka import Consumer, Producer

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
consumer.close()
print(f"confluent-kafka: consumed {seen}/{total}", file=sys.stderr)
sys.exit(0 if seen == total else 1)
