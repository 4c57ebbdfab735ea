"""confluent-kafka (librdkafka) transactions against a running broker.

A transactional producer commits one transaction over three partitions, aborts one, commits a
third; a read_committed consumer reads exactly the committed records and a read_uncommitted one
all of them. consume-transform-produce: a group consumer's offsets sent to the transaction
(send_offsets_to_transaction) are the group's committed offsets only once the transaction
commits, and stay put when it aborts. A second producer with the same transactional.id fences
the first (its commit fails with a fatal error).

Usage: python confluent_txn.py [HOST:PORT]   prints PASS or FAIL, exits 0 on PASS.
"""
import sys
import time
import traceback
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = sys.argv[1] if len(sys.argv) > 1 else "localhost:9092"
RUN = uuid.uuid4().hex[:10]
TOPIC = f"compat-txn-{RUN}"
IN_TOPIC = f"compat-txn-in-{RUN}"
OUT_TOPIC = f"compat-txn-out-{RUN}"
GROUP = f"compat-txn-group-{RUN}"
WAIT = 30


def log(msg):
    print(f"confluent-kafka txn: {msg}", flush=True)


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def producer(txn_id):
    p = Producer({"bootstrap.servers": BOOTSTRAP, "transactional.id": txn_id, "linger.ms": 5,
                  "broker.address.family": "v4"})
    p.init_transactions(WAIT)
    return p


def read(topic, partitions, isolation, count):
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"reader-{RUN}-{isolation}",
                  "enable.auto.commit": False, "isolation.level": isolation,
                  "broker.address.family": "v4"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values, deadline, quiet = [], time.time() + WAIT, None
    while time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            values.append(m.value().decode())
            quiet = time.time()
        if len(values) >= count and quiet is not None and time.time() - quiet > 2:
            break
    c.close()
    return sorted(values)


def main():
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "broker.address.family": "v4"})
    for f in admin.create_topics([NewTopic(TOPIC, 3, 1), NewTopic(IN_TOPIC, 1, 1),
                                  NewTopic(OUT_TOPIC, 1, 1)]).values():
        f.result()

    p = producer(f"compat-txn-{RUN}")
    for values, commit in [(["c0", "c1", "c2"], True), (["a0", "a1", "a2"], False),
                           (["c3", "c4"], True)]:
        p.begin_transaction()
        for n, v in enumerate(values):
            p.produce(TOPIC, v.encode(), partition=n % 3)
        # Delivered before the abort, which would otherwise drop them unsent.
        p.flush(WAIT)
        if commit:
            p.commit_transaction(WAIT)
        else:
            p.abort_transaction(WAIT)
    committed = read(TOPIC, 3, "read_committed", 5)
    check(committed == ["c0", "c1", "c2", "c3", "c4"], f"read_committed read {committed}")
    everything = read(TOPIC, 3, "read_uncommitted", 8)
    check(len(everything) == 8, f"read_uncommitted read {everything}")
    log(f"commit/abort/commit: read_committed {committed}")

    plain = Producer({"bootstrap.servers": BOOTSTRAP, "broker.address.family": "v4"})
    for n in range(6):
        plain.produce(IN_TOPIC, f"in-{n}".encode(), partition=0)
    plain.flush(WAIT)
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": GROUP,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed", "broker.address.family": "v4"})
    consumer.subscribe([IN_TOPIC])
    t = producer(f"compat-txn-ctp-{RUN}")

    # The read_committed consumer asks for stable offsets (KIP-447) and would wait while the
    # transaction is open; this one reads the group's committed offsets as they are.
    checker = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": GROUP,
                        "isolation.level": "read_uncommitted", "broker.address.family": "v4"})

    def committed_offset():
        return checker.committed([TopicPartition(IN_TOPIC, 0)], WAIT)[0].offset

    for commit in [True, False]:
        t.begin_transaction()
        got = 0
        deadline = time.time() + WAIT
        while got < 3 and time.time() < deadline:
            m = consumer.poll(0.5)
            if m is None or m.error() is not None:
                continue
            t.produce(OUT_TOPIC, b"out-" + m.value(), partition=0)
            got += 1
        check(got == 3, f"consumed {got} of 3")
        t.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                      consumer.consumer_group_metadata(), WAIT)
        before = committed_offset()
        if commit:
            check(before < 0, f"offset {before} visible before the commit")
            t.commit_transaction(WAIT)
            # The commit returns once PrepareCommit is durable; the offsets follow the markers.
            deadline = time.time() + WAIT
            while committed_offset() != 3 and time.time() < deadline:
                time.sleep(0.1)
            check(committed_offset() == 3, f"offset after commit {committed_offset()}")
        else:
            t.flush(WAIT)
            t.abort_transaction(WAIT)
            time.sleep(1)
            check(committed_offset() == 3, f"offset after abort {committed_offset()}")
    consumer.close()
    checker.close()
    out = read(OUT_TOPIC, 1, "read_committed", 3)
    check(out == ["out-in-0", "out-in-1", "out-in-2"], f"output {out}")
    log(f"consume-transform-produce: group offset 3 after commit and abort, output {out}")

    first = producer(f"compat-txn-fence-{RUN}")
    first.begin_transaction()
    first.produce(TOPIC, b"zombie", partition=0)
    first.flush(WAIT)
    second = producer(f"compat-txn-fence-{RUN}")
    try:
        first.commit_transaction(WAIT)
        raise CheckFailed("the fenced producer committed")
    except KafkaException as e:
        err = e.args[0]
        check(err.fatal(), f"fencing error not fatal: {err}")
        log(f"fenced: {err.name()}")
    second.begin_transaction()
    second.produce(TOPIC, b"current", partition=0)
    second.commit_transaction(WAIT)
    log("PASS")


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001 — any failure is a FAIL line
        traceback.print_exc()
        log("FAIL")
        sys.exit(1)
