#!/usr/bin/env python3
"""Apache Kafka 4.4.0 as the reference for Weir's produce latency: replication.py's
measurement 4 (one producer, single 1 KiB records, linger.ms=0, acks=all, a fixed offered
rate, the produce-latency program) run against real Kafka in KRaft mode on loopback, as

- one combined broker+controller node (topic RF 1), and
- three combined nodes forming a 3-voter quorum (topic RF 3, min.insync.replicas=2),

each with Kafka's default flush policy (the page cache and replication, no fsync per write)
and, as the nearest thing to Weir's durable.acks, with log.flush.interval.messages=1 (an fsync
after every append, on the leader and on each follower). With --weir, the same measurement then
runs on Weir clusters (replication.py's, durable.acks true and false), so that both land in
one table from one run on the same machine.

    cargo build --release -p weir-benches --bin produce-latency
    /tmp/bench-venv/bin/python benches/scripts/kafka_reference.py \
        [--latency-tool BIN] [--rates 2000,...] [--rate-seconds 5] [--setups 1:default,...]
        [--weir target/release/weir [--weir-setups 1:true,...]]

The broker's jars come from Maven Central on first use (benches/kafka/pom.xml, `mvn
dependency:copy-dependencies`) into ~/.cache/weir-kafka-4.4.0; needs Java 17 and Maven.
Each JVM gets -Xmx512m (the machine has two cores; the heap is not what limits a single
partition) and the G1 flags of Kafka's own start scripts. Nodes listen on 29092, 29094, 29096
(clients) and 29093, 29095, 29097 (controllers) plus --port-offset; their data goes to a
temporary directory that is removed at the end (kept with WEIR_KAFKA_KEEP=1, to read the nodes'
logs, which are at WARN unless WEIR_KAFKA_LOG_LEVEL says otherwise), and every JVM is stopped on
exit, error, SIGINT, SIGTERM or SIGHUP. `--setups ''` measures Weir only. Every figure is
printed with the 1-minute load average: the machine is shared with other builds. Prints a
markdown table.
"""

import argparse
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

from confluent_kafka.admin import AdminClient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import replication  # noqa: E402  (its Cluster starts Weir nodes exactly as its measurement 4 does)
# Topics, the fixed-rate runs and their rows exactly as replication.py's measurement 4, so that
# both tables are measured the same way; a cluster here only needs `bootstrap`.
from replication import (  # noqa: E402
    create_topic, fixed_rate, load, log, measure_fixed_rates)

KAFKA_VERSION = "4.4.0"
HERE = os.path.dirname(os.path.abspath(__file__))
POM = os.path.join(HERE, "..", "kafka", "pom.xml")
DEFAULT_LIBS = os.path.join(os.path.expanduser("~"), ".cache", f"weir-kafka-{KAFKA_VERSION}")

# What bin/kafka-server-start.sh and bin/kafka-run-class.sh would pass, with a smaller heap:
# Kafka as its operators run it, not a JVM with Java's defaults.
JVM_FLAGS = ["-Xmx512m", "-Xms512m", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
             "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
             "-Djava.awt.headless=true"]

# Warnings only, to a file per node: enough to see why a node failed, without the INFO lines
# costing the broker time during the measurement.
LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${sys:weir.kafka.log.level:-warn}
rootLogger.appenderRef.file.ref = file
"""

FLUSH_POLICIES = {
    "default": ({}, "default flush (no fsync)"),
    "fsync": ({"log.flush.interval.messages": "1"},
              "log.flush.interval.messages=1 (fsync every append)"),
}


def fetch_jars(libs, mvn):
    """The broker and its run-time dependencies, once; the marker is written last so that an
    interrupted download is retried rather than half used."""
    marker = os.path.join(libs, ".fetched")
    if os.path.exists(marker):
        return
    log(f"fetching Kafka {KAFKA_VERSION} jars into {libs}")
    subprocess.run([mvn, "-q", "-B", "-Dstyle.color=never", "-f", os.path.abspath(POM),
                    "dependency:copy-dependencies", f"-DoutputDirectory={libs}"], check=True)
    open(marker, "w").close()


def cluster_id():
    # What `kafka-storage random-uuid` prints: 16 random bytes, URL-safe base64, no padding,
    # and (like Kafka's own) never starting with "-", which the format command would take for
    # an option.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaCluster:
    """N Kafka nodes, each broker and controller (process.roles=broker,controller), with a
    static voter set (controller.quorum.voters) like Weir's clusters in replication.py."""

    def __init__(self, java, libs, root, n, port_offset, props):
        self.java, self.libs, self.n, self.props = java, libs, n, props
        self.dir = os.path.join(root, f"kafka-{uuid.uuid4().hex[:6]}")
        os.makedirs(self.dir)
        self.client_ports = {i: 29090 + 2 * i + port_offset for i in range(1, n + 1)}
        self.controller_ports = {i: 29091 + 2 * i + port_offset for i in range(1, n + 1)}
        self.voters = ",".join(
            f"{i}@127.0.0.1:{p}" for i, p in self.controller_ports.items())
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.client_ports.values())
        self.procs = {}
        with open(os.path.join(self.dir, "log4j2.properties"), "w") as f:
            f.write(LOG4J2)

    def node_dir(self, i):
        return os.path.join(self.dir, f"node-{i}")

    def properties(self, i):
        # Internal topics at RF 1 on a single node: their defaults (3) cannot be met there, and
        # the producer's transaction-less acks=all path never reads them anyway.
        internal_rf = "1" if self.n == 1 else "3"
        props = {
            "process.roles": "broker,controller",
            "node.id": str(i),
            "controller.quorum.voters": self.voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.client_ports[i]},"
                         f"CONTROLLER://127.0.0.1:{self.controller_ports[i]}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.client_ports[i]}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": os.path.join(self.node_dir(i), "data"),
            "offsets.topic.replication.factor": internal_rf,
            "transaction.state.log.replication.factor": internal_rf,
            "transaction.state.log.min.isr": "1" if self.n == 1 else "2",
            "share.coordinator.state.topic.replication.factor": internal_rf,
            "share.coordinator.state.topic.min.isr": "1" if self.n == 1 else "2",
        }
        props.update(self.props)
        return props

    def config_path(self, i):
        return os.path.join(self.node_dir(i), "server.properties")

    def java_cmd(self, i, main, *args):
        return [self.java, *JVM_FLAGS,
                f"-Dlog4j2.configurationFile={os.path.join(self.dir, 'log4j2.properties')}",
                f"-Dkafka.logs.dir={self.node_dir(i)}",
                f"-Dweir.kafka.log.level={os.environ.get('WEIR_KAFKA_LOG_LEVEL', 'warn')}",
                "-cp", os.path.join(self.libs, "*"), main, *args]

    def start(self, timeout=600):
        # A generous timeout: on the shared VM, JVM start-up has been seen to stall for minutes
        # while other builds saturate the disk.
        cid = cluster_id()
        for i in range(1, self.n + 1):
            os.makedirs(self.node_dir(i))
            with open(self.config_path(i), "w") as f:
                f.writelines(f"{k}={v}\n" for k, v in self.properties(i).items())
            # A static voter set needs no --standalone/--initial-controllers: each node's
            # storage only has to carry the same cluster id.
            subprocess.run(self.java_cmd(i, "kafka.tools.StorageTool", "format", "-t", cid,
                                         "-c", self.config_path(i)),
                           check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        for i in range(1, self.n + 1):
            out = open(os.path.join(self.node_dir(i), "stdout.log"), "ab")
            # A session of its own: a ^C in the terminal reaches this script, whose finally
            # stops the nodes, instead of killing them under a measurement.
            self.procs[i] = subprocess.Popen(
                self.java_cmd(i, "kafka.Kafka", self.config_path(i)),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
            out.close()
        deadline = time.monotonic() + timeout

        def check():
            for i, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"Kafka node {i} exited; see {self.node_dir(i)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka cluster not ready in {timeout} s; see {self.dir}")
            time.sleep(0.2)

        # The client listeners first, by plain connects: librdkafka would log every refused
        # connection to stderr while the JVMs start.
        for port in self.client_ports.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    check()
        # Ready = every broker registered and unfenced: only those appear in the metadata.
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        while True:
            try:
                if len(admin.list_topics(timeout=2).brokers) == self.n:
                    return
            except Exception:  # Metadata not served yet.
                pass
            check()

    def stop(self):
        # The data is thrown away: a controlled shutdown is not needed, only that no JVM
        # outlives the script.
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def warm_up(latency_tool, cluster, rf, seconds):
    """A JVM broker runs interpreted until the JIT has compiled its hot paths; the first
    measured rate would otherwise include that. Weir, compiled ahead of time, needs none, but
    gets the same, so that the two see the same sequence of load."""
    if seconds <= 0:
        return
    topic = create_topic(cluster, rf)
    try:
        fixed_rate(latency_tool, cluster, topic, 10000, seconds, 5)
    finally:
        replication.delete_topic(cluster, topic)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-tool", default=os.environ.get(
        "WEIR_PRODUCE_LATENCY", "target/release/produce-latency"),
        help="the fixed-rate producer (cargo build --release -p weir-benches "
             "--bin produce-latency)")
    parser.add_argument("--java", default=os.environ.get("JAVA", "java"))
    parser.add_argument("--mvn", default=os.environ.get("MVN", "mvn"))
    parser.add_argument("--kafka-libs", default=os.environ.get("WEIR_KAFKA_LIBS", DEFAULT_LIBS),
                        help=f"where the Kafka jars are (fetched if missing; default {DEFAULT_LIBS})")
    parser.add_argument("--port-offset", type=int, default=0,
                        help="added to every port (default 0: 29092, 29094, 29096)")
    parser.add_argument("--rates", default="2000,10000,20000,50000,100000,400000",
                        help="offered rates (records/s)")
    parser.add_argument("--rate-seconds", type=int, default=5, help="seconds per rate")
    parser.add_argument("--setups", default="1:default,3:default,1:fsync,3:fsync",
                        help="clusters as NODES:FLUSH (RF = NODES; FLUSH default or fsync)")
    parser.add_argument("--in-flight", default="1000000,5",
                        help="max.in.flight.requests.per.connection values")
    parser.add_argument("--weir", help="also measure Weir with this binary, after Kafka")
    parser.add_argument("--weir-setups", default="1:true,3:true,1:false,3:false",
                        help="Weir clusters as NODES:DURABLE_ACKS (RF = NODES)")
    parser.add_argument("--weir-port-offset", type=int, default=600,
                        help="as replication.py's --port-offset (default 600: 9692, 9694, 9696)")
    parser.add_argument("--warm-up-seconds", type=int, default=5,
                        help="unmeasured 10,000/s run on a fresh cluster before its figures")
    args = parser.parse_args()
    latency_tool = os.path.abspath(args.latency_tool)
    if not os.access(latency_tool, os.X_OK):
        parser.error(f"no produce-latency at {latency_tool} (cargo build --release "
                     "-p weir-benches --bin produce-latency)")
    setups = [("kafka", int(n), flush)
              for n, flush in (x.split(":") for x in args.setups.split(",") if x)]
    for _, _, flush in setups:
        if flush not in FLUSH_POLICIES:
            parser.error(f"unknown flush policy {flush!r} (default or fsync)")
    weir = None
    if args.weir:
        weir = os.path.abspath(args.weir)
        if not os.access(weir, os.X_OK):
            parser.error(f"no weir binary at {weir} (cargo build --release -p weir-broker)")
        setups += [("weir", int(n), durable)
                   for n, durable in (x.split(":") for x in args.weir_setups.split(",") if x)]
    in_flights = [int(x) for x in args.in_flight.split(",")]
    rates = [int(x) for x in args.rates.split(",")]
    libs = os.path.abspath(args.kafka_libs)

    # SIGTERM and SIGHUP must still reach the finally below and stop the JVMs; SIGINT does
    # through KeyboardInterrupt.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))
    fetch_jars(libs, args.mvn)
    java_version = subprocess.run([args.java, "-version"], capture_output=True,
                                  text=True).stderr.splitlines()[0]
    root = tempfile.mkdtemp(prefix="weir-kafka-ref-")
    clusters, rows = [], []
    print(f"command: {' '.join(sys.argv)}  (produce-latency: {latency_tool}"
          + (f", weir: {weir})" if weir else ")"))
    print(f"Kafka {KAFKA_VERSION} (KRaft, combined broker+controller nodes), {java_version}, "
          f"JVM flags: {' '.join(JVM_FLAGS)}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}, load at start: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, cores: {os.cpu_count()}")
    try:
        for kind, n, policy in setups:
            nodes = f"{n} node{'s' if n > 1 else ''}, RF {n}"
            if kind == "kafka":
                props, policy_label = FLUSH_POLICIES[policy]
                c = KafkaCluster(args.java, libs, root, n, args.port_offset, props)
                name = f"Kafka {KAFKA_VERSION}, {nodes}, {policy_label}"
            else:
                c = replication.Cluster(weir, root, n, args.weir_port_offset,
                                        {"durable.acks": policy})
                name = f"Weir, {nodes}, durable.acks={policy}"
            clusters.append(c)
            started = time.monotonic()
            c.start()
            log(f"started {name} in {time.monotonic() - started:.1f} s, bootstrap {c.bootstrap}")
            try:
                warm_up(latency_tool, c, n, args.warm_up_seconds)
                for max_in_flight in in_flights:
                    label = f"{name}, max.in.flight={max_in_flight:,}"
                    measure_fixed_rates(latency_tool, c, n, rates, args.rate_seconds, rows,
                                        label, max_in_flight)
            finally:
                c.stop()
    finally:
        for c in clusters:
            c.stop()
        if os.environ.get("WEIR_KAFKA_KEEP"):
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
        # What was measured before a failure is still worth printing.
        if rows:
            print(f"\nProduce latency at fixed rates: one producer, single 1 KiB "
                  f"records, linger.ms=0, acks=all, {args.rate_seconds} s per rate "
                  f"(RF 3: min.insync.replicas=2)\n")
            print("| setup | offered/s | sent/s | acknowledged/s | p50 ms | p99 ms | p99.9 ms "
                  "| max ms | load | errors |")
            print("|---|---|---|---|---|---|---|---|---|---|")
            print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
