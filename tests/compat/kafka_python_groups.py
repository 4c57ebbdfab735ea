#!/usr/bin/env python3
"""Consumer groups with kafka-python against a running Weir broker.

    python3 tests/compat/kafka_python_groups.py [BOOTSTRAP]   (default 127.0.0.1:9092)

Checks: a lone consumer joins, syncs, gets every partition, reads the 10 records produced
before it started and commits (committed() reads it back), reporting the time from its first
JoinGroup to the SyncGroup response and to the first record (target <= 0.5 s); two consumers
in one group split a 4-partition topic and one gets every partition back when the other leaves.
Exits non-zero on failure. Needs `pip install kafka-python` (3.x); the pair's topic is created
with 4 partitions through the admin client, the lone consumer's is auto-created.
"""
import logging
import sys
import threading
import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

BOOTSTRAP = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"
RUN = uuid.uuid4().hex[:8]


class JoinTimer(logging.Handler):
    """Times the first JoinGroup request to the first SyncGroup response from client logs."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.join = self.sync = self.first_record = None

    def emit(self, record):
        msg = record.getMessage()
        if self.join is None and "Sending request" in msg and "JoinGroupRequest" in msg:
            self.join = record.created
        if self.sync is None and "Received response" in msg and "SyncGroupResponse" in msg:
            self.sync = record.created


def fail(why):
    print("FAIL:", why)
    sys.exit(1)


def poll(consumer):
    consumer.poll(timeout_ms=50)


def lone_consumer():
    timer = JoinTimer()
    logging.getLogger("kafka").addHandler(timer)
    logging.getLogger("kafka").setLevel(logging.DEBUG)
    topic, group = "groups-lone-" + RUN, "groups-lone-" + RUN
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP)
    for i in range(10):
        producer.send(topic, key=b"k%d" % i, value=b"v%d" % i)
    producer.flush()
    producer.close()
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False,
                      auto_offset_reset="earliest")
    c.subscribe([topic])
    records = 0
    deadline = time.time() + 20
    while records < 10 and time.time() < deadline:
        for batch in c.poll(timeout_ms=50).values():
            if batch and timer.first_record is None:
                timer.first_record = time.time()
            records += len(batch)
    logging.getLogger("kafka").removeHandler(timer)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    if not c.assignment():
        fail("lone consumer got no assignment")
    if records != 10:
        fail("lone consumer read %d of 10 records" % records)
    assigned = sorted(c.assignment())
    tp = TopicPartition(topic, 0)
    c.commit({tp: OffsetAndMetadata(7, "meta", -1)})
    if c.committed(tp) != 7:
        fail("committed offset not read back: %r" % c.committed(tp))
    c.close(autocommit=False)
    if timer.join and timer.sync and timer.first_record:
        print("lone consumer: first JoinGroup -> SyncGroup response %.0f ms, -> first record %.0f ms"
              % ((timer.sync - timer.join) * 1000, (timer.first_record - timer.join) * 1000))
    print("ok: lone consumer joined, got %d partitions, read 10 records, committed 7"
          % len(assigned))


def pair():
    topic, group = "groups-pair-" + RUN, "groups-pair-" + RUN
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    admin.close()
    assignments, stops = {}, {}

    def run(name):
        c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False,
                          auto_offset_reset="earliest", client_id=name)
        c.subscribe([topic])
        while not stops[name].is_set():
            poll(c)
            assignments[name] = sorted(p.partition for p in c.assignment())
        c.close(autocommit=False)
        assignments[name] = None

    def start(name):
        stops[name] = threading.Event()
        t = threading.Thread(target=run, args=(name,), daemon=True)
        t.start()
        return t

    def wait(cond, what, limit=30):
        t0 = time.time()
        while not cond():
            if time.time() - t0 > limit:
                fail("%s: %s" % (what, assignments))
            time.sleep(0.01)
        print("ok: %-36s %.2fs %s" % (what, time.time() - t0, assignments))

    a = start("a")
    wait(lambda: assignments.get("a"), "a alone owns every partition")
    total = list(assignments["a"])
    if total != [0, 1, 2, 3]:
        fail("a alone should own partitions 0-3, owns %s" % total)
    b = start("b")
    both = lambda: (assignments.get("a") or []) + (assignments.get("b") or [])
    wait(lambda: sorted(both()) == total and len(assignments.get("a") or []) == 2,
         "a and b share them 2+2")
    stops["b"].set()
    b.join()
    wait(lambda: assignments.get("a") == total, "b left: a owns all again")
    stops["a"].set()
    a.join()


if __name__ == "__main__":
    lone_consumer()
    pair()
    print("PASS")
