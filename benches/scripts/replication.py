#!/usr/bin/env python3
"""Replication figures through librdkafka, on release `weir` processes over loopback:

1. produce throughput and latency, acks=all, replication factor 3 (min.insync.replicas=2) vs 1,
   with `durable.acks=true` and `durable.acks=false` (a fresh 3-node cluster each), plus acks=1
   at replication factor 3 for reference;
2. failover: kill -9 of a partition's leader while an idempotent acks=all producer sends a
   record every 2 ms, time from the kill to the next acknowledged record (3 repetitions);
3. catch-up: a follower killed, N MiB produced without it, time from its restart until it is
   back in the ISR;
4. produce latency at fixed rates (single 1 KiB records, linger.ms=0, one connection) on a
   single node (replication factor 1) and on the 3-node cluster (replication factor 3).

    cargo build --release -p weir-broker -p weir-benches --bin weir \
        --bin group-commit-baseline --bin produce-latency
    python3 benches/scripts/replication.py [--weir BIN] [--baseline BIN] [--quick]

Needs confluent-kafka (`pip install confluent-kafka`). The nodes run with the flags of
tests/cluster/cluster.sh (`broker.session.timeout.ms=3000`, `broker.heartbeat.interval.ms=500`)
on ports 9092+2i / 19093+2i plus --port-offset, with their data in a temporary directory that
is removed at the end. Every figure is printed with the 1-minute load average when it was
taken: the development machine is shared with other builds. Prints markdown tables.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

RECORD = 1024
SESSION_TIMEOUT_MS = 3000
HEARTBEAT_MS = 500


def log(message):
    print(f"# {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def load():
    return os.getloadavg()[0]


def percentile(samples, p):
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


class Cluster:
    """N weir nodes, each a broker and a controller, started like tests/cluster/cluster.sh does
    but owned by this process so that single nodes can be killed and restarted."""

    def __init__(self, weir, root, n, port_offset, props):
        self.weir, self.n, self.props = weir, n, props
        self.dir = os.path.join(root, f"cluster-{uuid.uuid4().hex[:6]}")
        os.makedirs(self.dir)
        self.client_ports = {i: 9090 + 2 * i + port_offset for i in range(1, n + 1)}
        self.controller_ports = {i: 19091 + 2 * i + port_offset for i in range(1, n + 1)}
        self.procs = {}
        self.log_starts = {}
        self.voters = ",".join(
            f"{i}@127.0.0.1:{p}" for i, p in self.controller_ports.items())
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.client_ports.values())

    def flags(self, i):
        return [
            f"--node.id={i}",
            f"--listeners=PLAINTEXT://127.0.0.1:{self.client_ports[i]},"
            f"CONTROLLER://127.0.0.1:{self.controller_ports[i]}",
            f"--controller.quorum.voters={self.voters}",
            f"--log.dirs={self.dir}/node-{i}",
            "--weir.admin.listener=none",
            "--offsets.topic.num.partitions=3",
            f"--broker.session.timeout.ms={SESSION_TIMEOUT_MS}",
            f"--broker.heartbeat.interval.ms={HEARTBEAT_MS}",
        ] + [f"--{k}={v}" for k, v in self.props.items()]

    def describe(self):
        extra = " ".join(f"--{k}={v}" for k, v in self.props.items())
        return (f"{self.n} node(s), session {SESSION_TIMEOUT_MS} ms, heartbeat {HEARTBEAT_MS} ms"
                + (f", {extra}" if extra else ""))

    def log_path(self, i):
        return os.path.join(self.dir, f"node-{i}.log")

    def ready_lines(self, i):
        try:
            with open(self.log_path(i), errors="replace") as f:
                return f.read().count("weir broker ready")
        except FileNotFoundError:
            return 0

    def spawn(self, i):
        # The broker reads WEIR_* variables as properties: keep this script's out of its way.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
        env.setdefault("RUST_LOG", "info,openraft=error")
        env["NO_COLOR"] = "1"
        out = open(self.log_path(i), "ab")
        self.log_starts[i] = out.tell()
        self.procs[i] = subprocess.Popen(
            [self.weir] + self.flags(i), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, env=env)
        out.close()

    def wait_ready(self, nodes, before, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            waiting = [i for i in nodes if self.ready_lines(i) <= before[i]]
            if not waiting:
                return
            for i in waiting:
                if self.procs[i].poll() is not None:
                    raise RuntimeError(f"node {i} exited; see {self.log_path(i)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes {waiting} not ready in {timeout} s")
            time.sleep(0.02)

    def start(self):
        nodes = list(range(1, self.n + 1))
        before = {i: self.ready_lines(i) for i in nodes}
        for i in nodes:
            self.spawn(i)
        self.wait_ready(nodes, before)

    def restart(self, i):
        """Starts node i again; returns when its ready line is logged."""
        before = {i: self.ready_lines(i)}
        self.spawn(i)
        self.wait_ready([i], before)

    def active_controller(self):
        """The running node whose current run last logged becoming the active controller."""
        for i, proc in self.procs.items():
            if proc.poll() is not None:
                continue
            with open(self.log_path(i), errors="replace") as f:
                f.seek(self.log_starts[i])
                text = f.read()
            if text.rfind("became the active controller") > text.rfind("no longer the active"):
                return i
        return None

    def kill(self, i):
        self.procs[i].kill()
        self.procs[i].wait()

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def admin_of(cluster):
    return AdminClient({"bootstrap.servers": cluster.bootstrap})


def partition_state(admin, topic):
    """(leader, isr) of partition 0 of the topic, as the metadata of some broker says."""
    meta = admin.list_topics(topic, timeout=5)
    partition = meta.topics[topic].partitions.get(0)
    if partition is None or meta.topics[topic].error is not None:
        return -1, []
    return partition.leader, sorted(partition.isrs)


def wait_for(admin, topic, check, timeout=60, what="partition state"):
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = partition_state(admin, topic)
            if check(*state):
                return state
        except Exception:  # A broker just killed or starting: ask again.
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{topic}: no {what} within {timeout} s")
        time.sleep(0.05)


def settled_leader(cluster, topic, timeout=60):
    """(leader, isr) once the ISR is full and the leader itself says it leads: any one broker's
    metadata can be stale (a node just restarted)."""
    deadline = time.monotonic() + timeout
    admin = admin_of(cluster)
    while True:
        leader, isr = wait_for(admin, topic, lambda l, isr: l >= 0 and len(isr) == cluster.n,
                               timeout=timeout, what="full ISR")
        own = AdminClient({"bootstrap.servers": f"127.0.0.1:{cluster.client_ports[leader]}"})
        try:
            if partition_state(own, topic)[0] == leader:
                return leader, isr
        except Exception:  # A broker just killed or starting: ask again.
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{topic}: no settled leader within {timeout} s")
        time.sleep(0.05)


def create_topic(cluster, rf):
    admin = admin_of(cluster)
    name = f"repl-rf{rf}-{uuid.uuid4().hex[:8]}"
    config = {"min.insync.replicas": "2"} if rf >= 3 else {}
    for future in admin.create_topics(
            [NewTopic(name, num_partitions=1, replication_factor=rf, config=config)],
            operation_timeout=30).values():
        future.result(timeout=30)
    wait_for(admin, name, lambda leader, isr: leader >= 0 and len(isr) == rf,
             what="leader with a full ISR")
    return name


def delete_topic(cluster, topic):
    admin = admin_of(cluster)  # Kept alive until the futures complete.
    for future in admin.delete_topics([topic], operation_timeout=30).values():
        future.result(timeout=30)


def producer(cluster, **config):
    settings = {"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 0}
    # librdkafka's property names with "_" for "."; callbacks (error_cb) keep their names.
    settings.update({k if k.endswith("_cb") else k.replace("_", "."): v
                     for k, v in config.items()})
    return Producer(settings)


def warm_up(p, topic):
    """Connections, metadata and (if idempotent) the producer id, before any clock starts."""
    p.produce(topic, b"warm-up")
    if p.flush(30) != 0:
        raise RuntimeError("warm-up record not acknowledged")


class Deliveries:
    """Delivery callback: acknowledgement time minus send time, per record (key = index)."""

    def __init__(self, count):
        self.sent = [0.0] * count
        self.acked = [0.0] * count
        self.errors = {}

    def callback(self, err, msg):
        now = time.perf_counter()
        i = int(msg.key())
        if err is not None:
            self.errors[err.name()] = self.errors.get(err.name(), 0) + 1
        else:
            self.acked[i] = now

    def latencies_ms(self):
        return [(a - s) * 1000 for s, a in zip(self.sent, self.acked) if a > 0]


def produce_throughput(cluster, topic, count, acks):
    """One producer sending `count` 1 KiB records as fast as librdkafka takes them
    (linger.ms=5, at most 10,000 records queued): records/s and per-record latency."""
    p = producer(cluster, acks=acks, linger_ms=5, queue_buffering_max_messages=10000)
    warm_up(p, topic)
    d = Deliveries(count)
    value = b"x" * RECORD
    started = time.perf_counter()
    for i in range(count):
        while True:
            try:
                d.sent[i] = time.perf_counter()
                p.produce(topic, value, key=str(i).encode(), on_delivery=d.callback)
                break
            except BufferError:
                p.poll(0.001)
        p.poll(0)
    p.flush(120)
    elapsed = time.perf_counter() - started
    lat = d.latencies_ms()
    return {
        "records/s": len(lat) / elapsed, "MB/s": len(lat) * RECORD / elapsed / 1e6,
        "p50": percentile(lat, 50), "p99": percentile(lat, 99), "errors": d.errors,
    }


def measure_throughput(cluster, count, rows, label):
    """Measurement 1 on a running cluster: acks=all at RF3 and RF1, acks=1 at RF3."""
    results = {}
    for rf, acks in ((3, "all"), (1, "all"), (3, "1")):
        topic = create_topic(cluster, rf)
        before = load()
        r = produce_throughput(cluster, topic, count, acks)
        r["load"] = max(before, load())
        results[(rf, acks)] = r
        rows.append(f"| {label} | {rf} | {acks} | {count:,} | {r['records/s']:,.0f} "
                    f"| {r['MB/s']:.1f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['load']:.1f} "
                    f"| {fmt_errors(r['errors'])} |")
        log(rows[-1])
    return results


def fmt_errors(errors):
    return ", ".join(f"{k} × {v}" for k, v in errors.items()) or "none"


def failover_once(cluster, topic, interval_s, after_s):
    """Sends a record every `interval_s` (idempotent, acks=all), kills the partition's leader
    with SIGKILL after 1 s, goes on for `after_s`. Returns (killed node, ms from the kill to the
    next acknowledged record, longest gap between acknowledgements in ms, delivery errors,
    client errors)."""
    client_errors = []
    p = producer(cluster, enable_idempotence=True, error_cb=lambda e: client_errors.append(
        f"{e.name()}: {e.str()}"))
    warm_up(p, topic)
    count = int((1 + after_s) / interval_s) + 10
    d = Deliveries(count)
    leader, _ = settled_leader(cluster, topic)
    controller = cluster.active_controller()
    started = time.perf_counter()
    killed_at = None
    sent = 0
    while True:
        now = time.perf_counter()
        if killed_at is None and now - started >= 1.0:
            cluster.kill(leader)
            killed_at = time.perf_counter()
        if now - started >= 1.0 + after_s or sent >= count:
            break
        d.sent[sent] = now
        p.produce(topic, b"x" * RECORD, key=str(sent).encode(), on_delivery=d.callback)
        sent += 1
        deadline = started + sent * interval_s
        while (left := deadline - time.perf_counter()) > 0:
            p.poll(left)
    p.flush(60)
    acks = sorted(a for a in d.acked if a > 0)
    after = [a for a in acks if a > killed_at]
    # A response already in the client's socket buffer can be read just after the kill: the
    # outage ends with the acknowledgement that closes the longest gap.
    gap_end, gap = None, 0.0
    for prev, cur in zip(acks, acks[1:]):
        if cur > killed_at and cur - prev > gap:
            gap_end, gap = cur, cur - prev
    first_ms = (after[0] - killed_at) * 1000 if after else float("nan")
    outage_ms = (gap_end - killed_at) * 1000 if gap_end else float("nan")
    return (leader, controller, first_ms, outage_ms, gap * 1000, d.errors, client_errors,
            sent - len(acks))


def measure_failover(cluster, repetitions, rows):
    """Measurement 2: kill -9 of the leader of a 1-partition RF3 topic, `repetitions` times,
    the killed node restarted (and back in the ISR) between repetitions."""
    topic = create_topic(cluster, 3)
    for rep in range(1, repetitions + 1):
        before = load()
        leader, controller, first_ms, outage_ms, gap_ms, errors, client_errors, lost = \
            failover_once(cluster, topic, interval_s=0.002, after_s=15.0)
        rows.append(f"| {rep} | {leader} | {controller} | {outage_ms:,.0f} | {first_ms:,.0f} | {gap_ms:,.0f} "
                    f"| {fmt_errors(errors)}; unacknowledged: {lost} | {max(before, load()):.1f} |")
        log(rows[-1])
        if client_errors:
            log(f"client errors: {sorted(set(client_errors))}")
        cluster.restart(leader)
        settled_leader(cluster, topic)


def measure_catch_up(cluster, mib, rows):
    """Measurement 3: a follower killed, the ISR shrunk to 2, `mib` MiB produced (acks=all),
    the follower restarted; time from its restart to its return to the ISR."""
    topic = create_topic(cluster, 3)
    admin = admin_of(cluster)
    leader, isr = settled_leader(cluster, topic)
    follower = next(i for i in isr if i != leader)
    cluster.kill(follower)
    killed = time.perf_counter()
    wait_for(admin, topic, lambda _l, isr: follower not in isr, what="ISR shrink")
    shrink_s = time.perf_counter() - killed
    p = producer(cluster, linger_ms=5, batch_size=1 << 20, queue_buffering_max_messages=100000)
    warm_up(p, topic)
    value = b"x" * RECORD
    count = mib * 1024 * 1024 // RECORD
    produce_started = time.perf_counter()
    failures = []
    for i in range(count):
        while True:
            try:
                p.produce(topic, value, on_delivery=lambda err, _m: err and failures.append(err))
                break
            except BufferError:
                p.poll(0.005)
    if p.flush(300) != 0 or failures:
        raise RuntimeError(f"catch-up produce failed: {failures[:3]}")
    produce_s = time.perf_counter() - produce_started
    before = load()
    restarted = time.perf_counter()
    cluster.restart(follower)
    ready_s = time.perf_counter() - restarted
    wait_for(admin, topic, lambda _l, isr: follower in isr, timeout=1800, what="ISR rejoin")
    rejoin_s = time.perf_counter() - restarted
    rows.append(f"| {mib:,} MiB | {shrink_s:.1f} s | {mib / produce_s:.1f} MiB/s "
                f"| {ready_s:.2f} s | {rejoin_s:.1f} s | {mib / rejoin_s:.1f} MiB/s "
                f"| {max(before, load()):.1f} |")
    log(rows[-1])


def fixed_rate(latency_tool, cluster, topic, rate, seconds, max_in_flight):
    """One producer, single records (linger.ms=0) sent on a fixed schedule of `rate`/s, until
    the schedule ends or librdkafka's queue (100,000 records) is full: the produce-latency
    program (librdkafka through the rdkafka crate), which sleeps between records instead of
    spinning, so the client does not take the cores the brokers need."""
    out = subprocess.run([latency_tool, cluster.bootstrap, topic, str(rate), str(seconds),
                          str(max_in_flight), "all", str(RECORD)],
                         check=True, capture_output=True, text=True).stdout
    fields = dict(kv.split("=", 1) for kv in out.split())
    return {"achieved": float(fields["achieved"]),
            "acknowledged": float(fields["acknowledged_per_s"]), "p50": float(fields["p50_ms"]),
            "p99": float(fields["p99_ms"]), "p999": float(fields["p999_ms"]),
            "max": float(fields["max_ms"]), "errors": int(fields["errors"]),
            "queue_full": fields["queue_full"] == "true",
            "unacknowledged": int(fields["unacknowledged"])}


def measure_fixed_rates(latency_tool, cluster, rf, rates, seconds, rows, label, max_in_flight):
    """Measurement 4: latency per offered rate, up to the first rate the client cannot hold.
    Each rate writes to a topic of its own, deleted afterwards: the peak probe alone writes
    gigabytes (times the replication factor), which would otherwise fill a small disk."""
    for rate in rates:
        before = load()
        topic = create_topic(cluster, rf)
        try:
            r = fixed_rate(latency_tool, cluster, topic, rate, seconds, max_in_flight)
        finally:
            delete_topic(cluster, topic)
        held = r["achieved"] >= 0.95 * rate and not r["queue_full"]
        notes = [f"{r['errors']} errors" if r["errors"] else "no errors"]
        if r["queue_full"]:
            notes.append("client queue full (100,000 records), stopped")
        if r["unacknowledged"]:
            notes.append(f"{r['unacknowledged']:,} unacknowledged after 60 s, purged")
        rows.append(f"| {label} | {rate:,} | {r['achieved']:,.0f}{'' if held else ' (not held)'} "
                    f"| {r['acknowledged']:,.0f} "
                    f"| {r['p50']:.2f} | {r['p99']:.2f} | {r['p999']:.2f} | {r['max']:.1f} "
                    f"| {max(before, load()):.1f} | {'; '.join(notes)} |")
        log(rows[-1])
        if not held:
            break


def measure_disk_floor(baseline, root, rates, seconds, rows):
    """The disk's own group-commit latency at each rate (group-commit-baseline: write 1 KiB
    records on schedule, fdatasync in a loop, no broker): the floor under every durable.acks
    figure of measurement 4, taken in the same run and on the same file system."""
    for rate in rates:
        before = load()
        out = subprocess.run([baseline, str(rate), str(seconds), root, str(RECORD)],
                             check=True, capture_output=True, text=True).stdout
        fields = dict(kv.split("=", 1) for kv in out.split())
        rows.append(f"| disk floor: write → fdatasync, no broker | {rate:,} | {rate:,} | {rate:,} "
                    f"| {float(fields['p50_ms']):.2f} | {float(fields['p99_ms']):.2f} "
                    f"| {float(fields['p999_ms']):.2f} | — | {max(before, load()):.1f} "
                    f"| fdatasync p50/p99 {fields['fsync_p50_ms']}/{fields['fsync_p99_ms']} ms |")
        log(rows[-1])


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weir", default=os.environ.get("WEIR_BIN", "target/release/weir"))
    parser.add_argument("--baseline", default=os.environ.get(
        "WEIR_GROUP_COMMIT_BASELINE", "target/release/group-commit-baseline"),
        help="the disk-floor program (cargo build --release -p weir-benches "
             "--bin group-commit-baseline), needed by measurement 4")
    parser.add_argument("--quick", action="store_true",
                        help="fewer records, 100 MiB catch-up instead of 1 GiB")
    parser.add_argument("--port-offset", type=int, default=600,
                        help="added to every port (default 600: 9694, 9696, 9698)")
    parser.add_argument("--rates", default="2000,20000,50000,100000,200000,400000",
                        help="offered rates for the latency measurement (records/s); the "
                             "last, beyond what one producer sustains, measures the peak "
                             "(acknowledged/s)")
    parser.add_argument("--latency-tool", default=os.environ.get(
        "WEIR_PRODUCE_LATENCY", "target/release/produce-latency"),
        help="the fixed-rate producer (cargo build --release -p weir-benches "
             "--bin produce-latency), needed by measurement 4")
    parser.add_argument("--rate-seconds", type=int, default=None,
                        help="seconds per rate in measurement 4 (default 10, 3 with --quick)")
    parser.add_argument("--only", default="1,2,3,4", help="which measurements to run")
    parser.add_argument("--setups", default="1:true,3:true,1:false,3:false",
                        help="measurement 4's clusters as NODES:DURABLE_ACKS (RF = NODES)")
    parser.add_argument("--in-flight", default="1000000,5",
                        help="measurement 4's max.in.flight.requests.per.connection values")
    args = parser.parse_args()
    weir = os.path.abspath(args.weir)
    if not os.access(weir, os.X_OK):
        parser.error(f"no weir binary at {weir} (cargo build --release -p weir-broker)")
    only = {int(x) for x in args.only.split(",")}
    if 4 in only and not os.access(args.baseline, os.X_OK):
        parser.error(f"no group-commit-baseline at {args.baseline} (cargo build --release "
                     "-p weir-benches --bin group-commit-baseline)")
    if 4 in only and not os.access(args.latency_tool, os.X_OK):
        parser.error(f"no produce-latency at {args.latency_tool} (cargo build --release "
                     "-p weir-benches --bin produce-latency)")
    setups = [(int(n), durable) for n, durable in (x.split(":") for x in args.setups.split(","))]
    in_flights = [int(x) for x in args.in_flight.split(",")]
    rates = [int(x) for x in args.rates.split(",")]
    count = 100_000 if args.quick else 500_000
    catch_up_mib = 100 if args.quick else 1024
    rate_seconds = args.rate_seconds or (3 if args.quick else 10)

    # SIGTERM (or ^C) must still reach the finally below and stop the nodes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    root = tempfile.mkdtemp(prefix="weir-repl-bench-")
    clusters = []

    def cluster(n, **props):
        c = Cluster(weir, root, n, args.port_offset, {k.replace("_", "."): v
                                                      for k, v in props.items()})
        clusters.append(c)
        c.start()
        log(f"started {c.describe()}, bootstrap {c.bootstrap}")
        return c

    throughput_rows, failover_rows, catch_up_rows, rate_rows = [], [], [], []
    throughput = {}
    print(f"command: {' '.join(sys.argv)}  (weir: {weir})")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}, load at start: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, cores: {os.cpu_count()}")
    try:
        for durable in ("true", "false"):
            if not only & {1, 2, 3} or (durable == "false" and 1 not in only):
                continue
            c = cluster(3, durable_acks=durable)
            try:
                if 1 in only:
                    throughput[durable] = measure_throughput(
                        c, count, throughput_rows, f"durable.acks={durable}")
                if durable == "true" and 2 in only:
                    measure_failover(c, 3, failover_rows)
                if durable == "true" and 3 in only:
                    measure_catch_up(c, catch_up_mib, catch_up_rows)
            finally:
                c.stop()
        if 4 in only:
            # The floor only where the broker holds the rate: the last rate probes the peak.
            measure_disk_floor(os.path.abspath(args.baseline), root,
                               [r for r in rates if r <= 200_000], rate_seconds, rate_rows)
            # librdkafka's default max.in.flight (1,000,000) sends every record as its own
            # request; 5 (the Java producer's default, and librdkafka's with idempotence) lets
            # records queue up behind the requests in flight and go together.
            for n, durable in setups:
                rf = n
                c = cluster(n, durable_acks=durable)
                try:
                    for max_in_flight in in_flights:
                        label = (f"{n} node{'s' if n > 1 else ''}, RF {rf}, durable.acks="
                                 f"{durable}, max.in.flight={max_in_flight:,}")
                        measure_fixed_rates(os.path.abspath(args.latency_tool), c, rf, rates,
                                            rate_seconds, rate_rows, label, max_in_flight)
                finally:
                    c.stop()
    finally:
        for c in clusters:
            c.stop()
        shutil.rmtree(root, ignore_errors=True)
        # What was measured before a failure is still worth printing.
        print_report(throughput, throughput_rows, failover_rows, catch_up_rows, rate_rows,
                     count, rate_seconds)
    return 0


def print_report(throughput, throughput_rows, failover_rows, catch_up_rows, rate_rows, count,
                 rate_seconds):
    if throughput_rows:
        print(f"\n1. Produce {count:,} × 1 KiB, one producer, linger.ms=5, 1 partition "
              "(RF 3: min.insync.replicas=2); latency = delivery callback − produce() call, "
              "with at most 10,000 records queued in the client\n")
        print("| cluster | RF | acks | records | records/s | MB/s | p50 ms | p99 ms | load | errors |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(throughput_rows))
        ratios = []
        for durable, r in throughput.items():
            ratios.append(f"RF3/RF1 acks=all, durable.acks={durable}: "
                          f"{r[(3, 'all')]['records/s'] / r[(1, 'all')]['records/s']:.2f}")
        if len(throughput) == 2:
            for rf in (3, 1):
                ratios.append(f"durable/non-durable RF{rf} acks=all: "
                              f"{throughput['true'][(rf, 'all')]['records/s'] / throughput['false'][(rf, 'all')]['records/s']:.2f}")
        print("\nratios (records/s): " + "; ".join(ratios))
    if failover_rows:
        print(f"\n2. Failover: kill -9 of the leader of a 1-partition RF 3 topic "
              f"(min.insync.replicas=2), idempotent acks=all producer sending a record every "
              f"2 ms; broker.session.timeout.ms={SESSION_TIMEOUT_MS}\n")
        print("| run | killed leader | active controller | kill → first ack after the outage, ms | kill → first ack, ms "
              "| longest ack gap, ms | delivery errors | load |")
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(failover_rows))
    if catch_up_rows:
        print("\n3. Catch-up: a follower killed (kill -9), data produced (acks=all, 1 KiB) "
              "with the ISR at 2, the follower restarted\n")
        print("| produced | kill → ISR shrink | produce rate | restart → ready "
              "| restart → back in ISR | catch-up rate | load |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(catch_up_rows))
    if rate_rows:
        print(f"\n4. Produce latency at fixed rates: one producer, single 1 KiB records, "
              f"linger.ms=0, acks=all, {rate_seconds} s per rate\n")
        print("| setup | offered/s | sent/s | acknowledged/s | p50 ms | p99 ms | p99.9 ms | max ms "
              "| load | errors |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(rate_rows))


if __name__ == "__main__":
    sys.exit(main())
