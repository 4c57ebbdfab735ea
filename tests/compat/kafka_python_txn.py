"""kafka-python 3.x transactions against a running broker.

A transactional producer commits one transaction and aborts another: a read_committed consumer
reads exactly the committed records. consume-transform-produce: offsets sent to a transaction
(send_offsets_to_transaction) are the group's committed offset once it commits. A second producer
with the same transactional_id fences the first (its commit raises).

Usage: python kafka_python_txn.py [HOST:PORT]   prints PASS or FAIL, exits 0 on PASS.
"""
import sys
import time
import traceback
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

BOOTSTRAP = sys.argv[1] if len(sys.argv) > 1 else "localhost:9092"
RUN = uuid.uuid4().hex[:10]
TOPIC = f"compat-kp-txn-{RUN}"
IN_TOPIC = f"compat-kp-txn-in-{RUN}"
OUT_TOPIC = f"compat-kp-txn-out-{RUN}"
GROUP = f"compat-kp-txn-group-{RUN}"


def log(msg):
    print(f"kafka-python txn: {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def read_committed(topic):
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, isolation_level="read_committed",
                      auto_offset_reset="earliest", consumer_timeout_ms=3000)
    c.assign([TopicPartition(topic, 0)])
    values = sorted(m.value.decode() for m in c)
    c.close()
    return values


def main():
    p = KafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"kp-tx-{RUN}")
    p.init_transactions()
    p.begin_transaction()
    for i in range(3):
        p.send(TOPIC, b"c%d" % i, partition=0)
    p.commit_transaction()
    p.begin_transaction()
    for i in range(2):
        p.send(TOPIC, b"a%d" % i, partition=0)
    p.flush()
    p.abort_transaction()
    p.close()
    values = read_committed(TOPIC)
    check(values == ["c0", "c1", "c2"], f"read_committed read {values}")
    log(f"commit then abort: read_committed {values}")

    plain = KafkaProducer(bootstrap_servers=BOOTSTRAP)
    for i in range(4):
        plain.send(IN_TOPIC, b"in-%d" % i, partition=0)
    plain.flush()
    plain.close()
    consumer = KafkaConsumer(IN_TOPIC, bootstrap_servers=BOOTSTRAP, group_id=GROUP,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             isolation_level="read_committed")
    t = KafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"kp-ctp-{RUN}")
    t.init_transactions()
    t.begin_transaction()
    got, deadline = 0, time.time() + 30
    while got < 4 and time.time() < deadline:
        for msgs in consumer.poll(500).values():
            for m in msgs:
                t.send(OUT_TOPIC, b"out-" + m.value, partition=0)
                got += 1
    check(got == 4, f"consumed {got} of 4")
    t.send_offsets_to_transaction({TopicPartition(IN_TOPIC, 0): OffsetAndMetadata(4, "", -1)},
                                  GROUP)
    t.commit_transaction()
    deadline = time.time() + 10
    while consumer.committed(TopicPartition(IN_TOPIC, 0)) != 4 and time.time() < deadline:
        time.sleep(0.1)
    committed = consumer.committed(TopicPartition(IN_TOPIC, 0))
    check(committed == 4, f"committed offset {committed}")
    consumer.close()
    out = read_committed(OUT_TOPIC)
    check(len(out) == 4, f"output {out}")
    log(f"consume-transform-produce: group offset {committed}, output {out}")

    first = KafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"kp-fence-{RUN}")
    first.init_transactions()
    first.begin_transaction()
    first.send(TOPIC, b"zombie", partition=0)
    first.flush()
    second = KafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"kp-fence-{RUN}")
    second.init_transactions()
    try:
        first.commit_transaction()
        raise AssertionError("the fenced producer committed")
    except AssertionError:
        raise
    except Exception as e:  # noqa: BLE001 — kafka-python raises its own error types
        log(f"fenced: {type(e).__name__}")
    second.begin_transaction()
    second.send(TOPIC, b"current", partition=0)
    second.commit_transaction()
    second.close()
    first.close(timeout=1)
    log("PASS")


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001 — any failure is a FAIL line
        traceback.print_exc()
        log("FAIL")
        sys.exit(1)
