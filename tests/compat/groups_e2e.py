#!/usr/bin/env python3
"""Consumer groups end to end: real confluent-kafka consumers, each its own OS process, against a
Weir broker this script starts (and restarts) itself.

    python3 tests/compat/groups_e2e.py [--weir PATH]      (or WEIR_BIN; default target/release/weir)

Scenarios (each prints `ok: ...` lines and the measured figures):
 0. A lone consumer reads 10 records; prints its first JoinGroup -> first record time.
 1. 4 partitions, 4 consumers in one group: one partition each; a fifth joins and stays idle
    while the four still hold one each.
 2. Records flowing, SIGKILL a consumer holding a partition: the partition moves to another
    member (time printed) and every produced record is consumed at least once (consumers commit
    synchronously after processing).
 3. Broker restart, SIGTERM and then SIGKILL: the group's committed offsets are identical before
    and after; fresh consumers (SIGTERM case) or the running ones (SIGKILL case) resume from them:
    nothing skipped, nothing before the committed offset read again.
 4. Static membership (group.instance.id): a member SIGKILLed or closed (no LeaveGroup) and
    restarted within its session timeout gets its partition back; the other members see no
    revoke/assign and DescribeGroups shows the group Stable with their member ids unchanged.
 5. cooperative-sticky: members added and removed over several rounds keep their partitions
    (only partitions that move are revoked, nothing is revoked from a member that keeps its
    share) and every round ends balanced.

The broker runs on a free port with a temporary data directory and short group settings
(group.min.session.timeout.ms=500, so consumers can use a 2 s session). Needs confluent-kafka
(2.x). Exits non-zero on the first failure, printing the broker log's tail.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = uuid.uuid4().hex[:8]
# Generous upper bounds for poll-until waits: they only bound a failure, never a pass.
WAIT = 30.0
# Every consumer process started, so none outlives a failed run.
WORKERS = []
# librdkafka's syslog level for every client: its disconnect and connection-refused lines are
# expected while the broker restarts. GROUPS_E2E_LOG_LEVEL=7 shows everything.
LOG_LEVEL = int(os.environ.get("GROUPS_E2E_LOG_LEVEL", "2"))


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def wait_until(cond, what, limit=WAIT, step=0.02):
    """Polls cond until true; returns the seconds it took. Raises Failure after limit."""
    t0 = time.monotonic()
    while True:
        value = cond()
        if value:
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit:
            raise Failure("timed out after %.0fs waiting for: %s" % (limit, what))
        time.sleep(step)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Broker process


class Broker:
    def __init__(self, binary, data_dir, log_path):
        self.binary, self.data_dir, self.log_path = binary, data_dir, log_path
        self.port = free_port()
        self.bootstrap = "127.0.0.1:%d" % self.port
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        log = open(self.log_path, "a")
        log.write("\n=== start %d\n" % self.starts)
        log.flush()
        offset = log.tell()
        self.proc = subprocess.Popen(
            [self.binary,
             "--listeners=PLAINTEXT://127.0.0.1:%d" % self.port,
             "--log.dirs=%s" % self.data_dir,
             # No admin HTTP port: another broker (CI's, on :9092) may hold the default one.
             "--weir.admin.listener=none",
             "--num.partitions=1",
             "--offsets.topic.num.partitions=10",
             # Lets consumers use a 2 s session so a SIGKILLed member is noticed quickly.
             "--group.min.session.timeout.ms=500"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info")))
        log.close()

        def ready():
            if self.proc.poll() is not None:
                raise Failure("broker exited with %s before it was ready" % self.proc.returncode)
            with open(self.log_path) as f:
                f.seek(offset)
                return "weir broker ready" in f.read()
        wait_until(ready, "broker ready line", step=0.05)

    def stop(self, sig):
        """Stops the broker with sig and waits for it; returns the exit code and seconds taken."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("broker did not stop within %.0fs of signal %d" % (WAIT, sig))
        return rc, time.monotonic() - t0

    def tail(self, lines=80):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


# --------------------------------------------------------------------------------------------
# Consumer worker: a separate OS process driven by this script with --worker JSON.


def worker_main(spec):
    """Subscribes and reports, one JSON line per event on stdout: assign/revoke/lost (the
    partitions in the callback), records (partition, offset, value), committed, error."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    out_lock = threading.Lock()

    def emit(**event):
        event["t"] = time.time()
        with out_lock:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    conf = {
        "bootstrap.servers": spec["bootstrap"],
        "group.id": spec["group"],
        "client.id": spec["name"],
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": spec.get("session_ms", 2000),
        "heartbeat.interval.ms": spec.get("heartbeat_ms", 300),
        "partition.assignment.strategy": spec.get("strategy", "range"),
        "topic.metadata.refresh.interval.ms": 1000,
        "reconnect.backoff.max.ms": 200,
        "retry.backoff.max.ms": 200,
        "fetch.wait.max.ms": 100,
        "log_level": LOG_LEVEL,
    }
    if spec.get("instance"):
        conf["group.instance.id"] = spec["instance"]
    if spec.get("debug"):
        # librdkafka then writes its protocol log, with timestamps, to this process's stderr.
        conf["debug"] = spec["debug"]
        conf["log_level"] = 7
    consumer = Consumer(conf)
    pending = {}  # partition -> next offset to commit (processed, not yet committed)

    def commit_pending(partitions=None):
        todo = {p: o for p, o in pending.items() if partitions is None or p in partitions}
        if not todo:
            return True
        try:
            consumer.commit(offsets=[TopicPartition(spec["topic"], p, o) for p, o in todo.items()],
                            asynchronous=False)
        except KafkaException as e:
            emit(ev="error", what="commit", error=str(e))
            return False
        for p, o in todo.items():
            if pending.get(p) == o:
                del pending[p]
        emit(ev="committed", offsets=todo)
        return True

    def on_assign(_c, parts):
        emit(ev="assign", parts=sorted(tp.partition for tp in parts))

    def on_revoke(_c, parts):
        revoked = {tp.partition for tp in parts}
        # Commit what was processed before the partitions go to another member.
        commit_pending(revoked)
        for p in revoked:
            pending.pop(p, None)
        emit(ev="revoke", parts=sorted(revoked))

    def on_lost(_c, parts):
        lost = {tp.partition for tp in parts}
        for p in lost:
            pending.pop(p, None)
        emit(ev="lost", parts=sorted(lost))

    consumer.subscribe([spec["topic"]], on_assign=on_assign, on_revoke=on_revoke,
                       on_lost=on_lost)
    emit(ev="started", pid=os.getpid())
    while not stop.is_set():
        msgs = consumer.consume(num_messages=500, timeout=0.1)
        records = []
        for m in msgs:
            if m.error():
                emit(ev="error", what="consume", error=str(m.error()))
                continue
            records.append([m.partition(), m.offset(), m.value().decode()])
            pending[m.partition()] = m.offset() + 1
        if records:
            # "Processing" is handing the records to the parent; only then commit them.
            emit(ev="records", records=records)
        commit_pending()
    consumer.close()
    emit(ev="closed")


class Worker:
    """The parent's handle on one consumer process and the events it reported."""

    def __init__(self, name, spec, stderr=None):
        self.name = name
        self.events = []
        self.lock = threading.Lock()
        self.owned = set()
        spec = dict(spec, name=name)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=stderr, text=True,
            bufsize=1)
        WORKERS.append(self)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                if event["ev"] == "assign":
                    self.owned |= set(event["parts"])
                elif event["ev"] in ("revoke", "lost"):
                    self.owned -= set(event["parts"])
                self.events.append(event)

    def snapshot(self):
        with self.lock:
            return set(self.owned), len(self.events)

    def events_since(self, mark, kinds=("assign", "revoke", "lost")):
        with self.lock:
            return [e for e in self.events[mark:] if e["ev"] in kinds]

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.reader.join(timeout=5)

    def close(self):
        """SIGTERM: the worker closes its consumer (LeaveGroup for a dynamic member)."""
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Failure("consumer %s did not close within %.0fs" % (self.name, WAIT))
        self.reader.join(timeout=5)


class Consumed:
    """Every (partition, offset) any worker reported, with the first-seen order per worker."""

    def __init__(self, workers):
        self.workers = workers

    def offsets(self, since=None):
        seen = set()
        for w in self.workers:
            start = (since or {}).get(w.name, 0)
            with w.lock:
                events = w.events[start:]
            for e in events:
                if e["ev"] == "records":
                    seen.update((p, o) for p, o, _ in e["records"])
        return seen


# --------------------------------------------------------------------------------------------
# Helpers against the broker


class Cluster:
    def __init__(self, broker):
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient
        self.broker = broker
        self.admin = AdminClient({"bootstrap.servers": broker.bootstrap,
                                  "log_level": LOG_LEVEL})
        self.producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5,
                                  "log_level": LOG_LEVEL,
                                  "reconnect.backoff.max.ms": 200,
                                  "retry.backoff.max.ms": 200})
        self.delivered = {}  # topic -> set of (partition, offset)

    def create_topic(self, topic, partitions):
        from confluent_kafka.admin import NewTopic
        fs = self.admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                                replication_factor=1)])
        fs[topic].result(timeout=WAIT)

    def produce(self, topic, count, partitions, start=0):
        """Produces count records round-robin over the partitions and waits for delivery."""
        errors = []
        got = self.delivered.setdefault(topic, set())

        def report(err, msg):
            if err is not None:
                errors.append(str(err))
            else:
                got.add((msg.partition(), msg.offset()))
        for i in range(start, start + count):
            while True:
                try:
                    self.producer.produce(topic, value=("%s-%d" % (topic, i)).encode(),
                                          partition=i % partitions, on_delivery=report)
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)
        remaining = self.producer.flush(WAIT)
        check(remaining == 0 and not errors,
              "produce to %s: %d undelivered, errors %s" % (topic, remaining, errors[:3]))

    def end_offsets(self, topic, partitions):
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": "probe-" + RUN,
                      "log_level": LOG_LEVEL})
        try:
            return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in range(partitions)}
        finally:
            c.close()

    def committed(self, group, topic, partitions):
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
        req = ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p) for p in range(partitions)])
        result = self.admin.list_consumer_group_offsets([req])[group].result(timeout=WAIT)
        return {tp.partition: tp.offset for tp in result.topic_partitions}

    def describe(self, group):
        return self.admin.describe_consumer_groups([group])[group].result(timeout=WAIT)

    def reconnect(self, broker):
        self.__init__(broker)


def assignment(workers):
    return {w.name: sorted(w.snapshot()[0]) for w in workers}


def one_each(workers, partitions):
    owned = [w.snapshot()[0] for w in workers]
    return (all(len(o) == 1 for o in owned)
            and set().union(*owned) == set(range(partitions)))


# --------------------------------------------------------------------------------------------
# Scenarios


def scenario_lone_consumer(cluster, workdir, figures):
    """A lone consumer's first JoinGroup (from librdkafka's protocol log) to its first record."""
    topic = group = "e2e-lone-" + RUN
    cluster.create_topic(topic, 1)
    cluster.produce(topic, 10, 1)
    log_path = os.path.join(workdir, "lone-consumer.log")
    with open(log_path, "w") as log:
        lone = Worker("lone", {"bootstrap": cluster.broker.bootstrap, "group": group,
                               "topic": topic, "debug": "protocol"}, stderr=log)
    wait_until(lambda: len(Consumed([lone]).offsets()) == 10, "lone consumer reads 10 records")
    first_record = min(e["t"] for e in lone.events_since(0, ("records",)))
    lone.close()
    join = None
    with open(log_path) as f:
        for line in f:
            # %7|<unix time>|SEND|<client>| [thrd:...]: ...: Sent JoinGroupRequest (v5, ...)
            if "Sent JoinGroupRequest" in line:
                join = float(line.split("|")[1])
                break
    check(join is not None, "no JoinGroupRequest in the lone consumer's protocol log")
    figures["lone_join_to_record_ms"] = (first_record - join) * 1000
    print("ok: lone consumer read 10 records; first JoinGroup -> first record %.0f ms "
          "(group.initial.rebalance.delay.ms=100)" % figures["lone_join_to_record_ms"])


def scenario_one_partition_each(cluster, figures):
    topic = group = "e2e-four-" + RUN
    cluster.create_topic(topic, 4)
    spec = {"bootstrap": cluster.broker.bootstrap, "group": group, "topic": topic}
    # Range assigns in member-id order and member ids start with the client id, so c5 (the
    # last to sort) is the one left without a partition when five members share four.
    workers = [Worker("c%d" % i, spec) for i in range(1, 5)]
    took = wait_until(lambda: one_each(workers, 4), "4 consumers hold one partition each")
    print("ok: 4 consumers, 4 partitions: one each after %.2fs %s" % (took, assignment(workers)))
    fifth = Worker("c5", spec)
    mark = len(fifth.events)

    def fifth_settled():
        # The fifth member has been through a rebalance (an assign callback, possibly empty)
        # and the four hold one partition each again.
        return (any(e["ev"] == "assign" for e in fifth.events_since(mark))
                and one_each(workers, 4) and not fifth.snapshot()[0])
    took = wait_until(fifth_settled, "fifth consumer joined idle, four hold one each")
    print("ok: fifth consumer joined and is idle after %.2fs %s"
          % (took, assignment(workers + [fifth])))
    return topic, group, workers + [fifth]


def scenario_sigkill(cluster, topic, group, workers, figures):
    """Keeps records flowing, SIGKILLs c1 and waits for its partition to move."""
    stop = threading.Event()
    produced = [0]

    def flow():
        while not stop.is_set():
            cluster.produce(topic, 40, 4, start=produced[0])
            produced[0] += 40
            time.sleep(0.02)
    producer = threading.Thread(target=flow, daemon=True)
    producer.start()
    consumed = Consumed(workers)
    wait_until(lambda: len(consumed.offsets()) >= 400, "records flowing to the group")
    victim = workers[0]
    owned = victim.snapshot()[0]
    check(len(owned) == 1, "victim %s owns %s" % (victim.name, owned))
    (partition,) = owned
    # Let the victim process records of its partition first, so it has something uncommitted
    # or just committed when it dies.
    wait_until(lambda: any(p == partition for p, _ in consumed.offsets()),
               "victim consumed from its partition")
    killed_at = time.time()
    victim.kill()
    survivors = workers[1:]

    def moved():
        return any(partition in w.snapshot()[0] for w in survivors) and one_each(survivors, 4)
    wait_until(moved, "partition %d of the killed consumer reassigned" % partition)
    taker = next(w for w in survivors if partition in w.snapshot()[0])
    assigned_at = min(e["t"] for e in taker.events_since(0, ("assign",))
                      if partition in e["parts"] and e["t"] >= killed_at)
    reassign = assigned_at - killed_at
    figures["sigkill_reassign_s"] = reassign
    print("ok: SIGKILL %s (partition %d): %s took it over %.2fs after the kill "
          "(session.timeout.ms=2000, heartbeat.interval.ms=300) %s"
          % (victim.name, partition, taker.name, reassign, assignment(survivors)))
    stop.set()
    producer.join()
    delivered = cluster.delivered[topic]
    took = wait_until(lambda: delivered <= consumed.offsets(),
                      "every produced record consumed (%d produced)" % len(delivered))
    wait_for_commits(cluster, group, topic, 4)
    print("ok: all %d produced records consumed at least once (%d distinct offsets reported, "
          "%.2fs after the producer stopped); committed offsets reached the end"
          % (len(delivered), len(consumed.offsets()), took))
    return survivors


def wait_for_commits(cluster, group, topic, partitions):
    ends = cluster.end_offsets(topic, partitions)
    wait_until(lambda: cluster.committed(group, topic, partitions) == ends,
               "committed offsets reach the end offsets %s" % ends, step=0.2)
    return ends


def records_since(workers, marks):
    """(partition, offset) -> how often reported by workers since marks."""
    counts = {}
    for w in workers:
        with w.lock:
            events = w.events[marks.get(w.name, 0):]
        for e in events:
            if e["ev"] == "records":
                for p, o, _ in e["records"]:
                    counts[(p, o)] = counts.get((p, o), 0) + 1
    return counts


def scenario_broker_restart(cluster, broker, topic, group, workers, figures):
    spec = {"bootstrap": broker.bootstrap, "group": group, "topic": topic}
    # SIGTERM with the group emptied first: fresh consumers must start at the commits.
    for w in workers:
        w.close()
    before = cluster.committed(group, topic, 4)
    check(all(o >= 0 for o in before.values()), "committed before restart: %s" % before)
    rc, took = broker.stop(signal.SIGTERM)
    check(rc == 0, "broker exit code after SIGTERM: %s" % rc)
    figures["sigterm_stop_s"] = took
    broker.start()
    cluster.reconnect(broker)
    after = cluster.committed(group, topic, 4)
    check(after == before, "committed offsets changed over a SIGTERM restart: %s -> %s"
          % (before, after))
    print("ok: SIGTERM restart (stopped in %.2fs): committed offsets intact %s" % (took, after))
    cluster.produce(topic, 200, 4, start=100000)
    ends = cluster.end_offsets(topic, 4)
    fresh = [Worker("r%d" % i, spec) for i in range(1, 3)]
    wait_until(lambda: set(records_since(fresh, {})) >= {
        (p, o) for p in range(4) for o in range(before[p], ends[p])},
        "fresh consumers read everything after the commits")
    counts = records_since(fresh, {})
    check(all(o >= before[p] for p, o in counts),
          "fresh consumers re-read records before the committed offsets: %s"
          % sorted((p, o) for p, o in counts if o < before[p])[:5])
    print("ok: fresh consumers resumed exactly at the committed offsets (%d records)"
          % len(counts))
    wait_for_commits(cluster, group, topic, 4)

    # SIGKILL with the consumers running through it: they reconnect to the restarted broker.
    before = cluster.committed(group, topic, 4)
    marks = {w.name: len(w.events) for w in fresh}
    rc, _ = broker.stop(signal.SIGKILL)
    broker.start()
    cluster.reconnect(broker)
    after = cluster.committed(group, topic, 4)
    check(after == before, "committed offsets changed over a SIGKILL restart: %s -> %s"
          % (before, after))
    print("ok: SIGKILL restart: committed offsets intact %s" % after)
    cluster.produce(topic, 200, 4, start=200000)
    ends = cluster.end_offsets(topic, 4)
    wait_until(lambda: set(records_since(fresh, marks)) >= {
        (p, o) for p in range(4) for o in range(before[p], ends[p])},
        "running consumers read everything produced after the SIGKILL restart")
    counts = records_since(fresh, marks)
    check(all(o >= before[p] for p, o in counts),
          "consumers re-read records before the committed offsets after the SIGKILL restart")
    wait_for_commits(cluster, group, topic, 4)
    print("ok: consumers kept running through the SIGKILL restart and resumed at the commits "
          "(%d records)" % len(counts))
    for w in fresh:
        w.close()


def scenario_static(cluster, broker):
    topic = group = "e2e-static-" + RUN
    cluster.create_topic(topic, 4)
    spec = {"bootstrap": broker.bootstrap, "group": group, "topic": topic,
            "session_ms": 10000, "heartbeat_ms": 300}
    workers = [Worker("s%d" % i, dict(spec, instance="inst-%d" % i)) for i in range(1, 5)]
    wait_until(lambda: one_each(workers, 4), "4 static members hold one partition each")
    wait_until(lambda: cluster.describe(group).state.name == "STABLE", "group Stable")
    # librdkafka sends no LeaveGroup when a static member closes (KIP-345), so a clean close
    # must look to the group like a kill.
    for index, how in ((1, "SIGKILLed"), (3, "closed")):
        before = cluster.describe(group)
        ids = {m.group_instance_id: m.member_id for m in before.members}
        old = workers[index]
        owned = old.snapshot()[0]
        others = [w for w in workers if w is not old]
        marks = {w.name: w.snapshot()[1] for w in others}
        if how == "closed":
            old.close()
        else:
            old.kill()
        new = Worker(old.name, dict(spec, instance="inst-%d" % (index + 1)))
        workers[index] = new
        took = wait_until(lambda: new.snapshot()[0], "restarted static member assigned")
        check(new.snapshot()[0] == owned, "static member %s got %s back, held %s"
              % (new.name, new.snapshot()[0], owned))
        # Nothing must happen to the others: watch them for several heartbeat intervals, long
        # enough for a rebalance to reach them (they learn of one from a heartbeat).
        watch_until = time.monotonic() + 2.0
        while time.monotonic() < watch_until:
            for w in others:
                events = w.events_since(marks[w.name])
                check(not events, "member %s saw %s after %s restarted" % (w.name, events,
                                                                           old.name))
            time.sleep(0.05)
        after = cluster.describe(group)
        check(after.state.name == "STABLE", "group state after restart: %s" % after.state)
        ids_after = {m.group_instance_id: m.member_id for m in after.members}
        check(set(ids_after) == set(ids), "instances %s -> %s" % (sorted(ids), sorted(ids_after)))
        for inst, member in ids.items():
            if inst == "inst-%d" % (index + 1):
                check(ids_after[inst] != member, "restarted member kept its member id")
            else:
                check(ids_after[inst] == member, "member id of %s changed" % inst)
        print("ok: static member %s %s and restarted: partition %s back %.2fs after the "
              "restart, others saw no rebalance, group Stable, their member ids unchanged"
              % (old.name, how, sorted(owned), took))
    for w in workers:
        w.close()


def balanced(workers, partitions):
    owned = [w.snapshot()[0] for w in workers]
    union = set().union(*owned) if owned else set()
    sizes = [len(o) for o in owned]
    return (union == set(range(partitions)) and sum(sizes) == partitions
            and max(sizes) - min(sizes) <= 1)


def scenario_cooperative(cluster, broker):
    topic = group = "e2e-coop-" + RUN
    partitions = 6
    cluster.create_topic(topic, partitions)
    spec = {"bootstrap": broker.bootstrap, "group": group, "topic": topic,
            "strategy": "cooperative-sticky"}
    workers = []
    names = iter("k%d" % i for i in range(1, 100))
    # Rounds: add, add, add, remove, add, remove, remove.
    plan = ["add", "add", "add", "remove", "add", "remove", "remove"]
    for step, action in enumerate(plan, 1):
        before = {w.name: w.snapshot()[0] for w in workers}
        marks = {w.name: w.snapshot()[1] for w in workers}
        if action == "add":
            workers.append(Worker(next(names), spec))
            changed = workers[-1].name
        else:
            # The oldest member leaves (gracefully): its partitions must go to the others.
            leaving = workers.pop(0)
            changed = leaving.name
            leaving.close()
        took = wait_until(lambda: balanced(workers, partitions),
                          "round %d (%s %s) balanced" % (step, action, changed))
        for w in workers:
            if w.name not in before:
                continue
            kept, now = before[w.name], w.snapshot()[0]
            events = w.events_since(marks[w.name])
            revoked = set().union(*[set(e["parts"]) for e in events if e["ev"] != "assign"])
            assigned = set().union(*[set(e["parts"]) for e in events if e["ev"] == "assign"])
            check(revoked == kept - now,
                  "round %d: %s revoked %s but only lost %s" % (step, w.name, sorted(revoked),
                                                               sorted(kept - now)))
            check(not (assigned & kept),
                  "round %d: %s was re-assigned partitions it kept: %s"
                  % (step, w.name, sorted(assigned & kept)))
            check(now >= kept or action == "add",
                  "round %d: %s lost partitions when a member left" % (step, w.name))
        print("ok: cooperative round %d (%s %s): balanced after %.2fs, only moved partitions "
              "revoked %s" % (step, action, changed, took, assignment(workers)))
    for w in workers:
        w.close()


# --------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weir", default=os.environ.get(
        "WEIR_BIN", os.path.join(HERE, "..", "..", "target", "release", "weir")))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(json.loads(args.worker))
        return 0
    binary = os.path.abspath(args.weir)
    if not os.access(binary, os.X_OK):
        print("FAIL: no broker binary at %s (build it: cargo build --release -p weir-broker)"
              % binary)
        return 1
    workdir = tempfile.mkdtemp(prefix="weir-groups-e2e.")
    broker = Broker(binary, os.path.join(workdir, "data"), os.path.join(workdir, "broker.log"))
    started = time.monotonic()
    figures = {}
    try:
        broker.start()
        print("broker %s on %s, data in %s" % (binary, broker.bootstrap, workdir))
        cluster = Cluster(broker)
        scenario_lone_consumer(cluster, workdir, figures)
        topic, group, workers = scenario_one_partition_each(cluster, figures)
        workers = scenario_sigkill(cluster, topic, group, workers, figures)
        scenario_broker_restart(cluster, broker, topic, group, workers, figures)
        scenario_static(cluster, broker)
        scenario_cooperative(cluster, broker)
        rc, took = broker.stop(signal.SIGTERM)
        check(rc == 0, "broker exit code after the final SIGTERM: %s" % rc)
    except Failure as e:
        print("FAIL: %s" % e)
        for w in WORKERS:
            errors = [e for e in w.events_since(0, ("error",))][-3:]
            if errors:
                print("--- consumer %s's last errors: %s" % (w.name, errors))
        print("--- broker log tail (%s)" % broker.log_path)
        print(broker.tail())
        if broker.proc and broker.proc.poll() is None:
            broker.proc.kill()
        return 1
    finally:
        for w in WORKERS:
            if w.alive():
                w.proc.kill()
    print("figures: lone consumer first JoinGroup -> first record %.0f ms; SIGKILLed consumer's "
          "partition reassigned after %.2fs; SIGTERM stop %.2fs"
          % (figures["lone_join_to_record_ms"], figures["sigkill_reassign_s"],
             figures["sigterm_stop_s"]))
    print("PASS (%.0fs)" % (time.monotonic() - started))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
