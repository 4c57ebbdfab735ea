#!/usr/bin/env python3
"""Produce latency of two `weir` builds, A and B, alternated in one run (an A/B comparison).

Each round starts every build in turn as a fresh single-node broker (durable acknowledgement,
Weir's default) on its own temporary data directory, creates a 1-partition topic, warms it up
for 2 s at 20,000 records/s, then runs `produce-latency` (librdkafka, single 1 KiB records,
linger.ms=0, acks=all) for SECONDS at each RATE, and records the broker's CPU time (user +
system, from /proc) over each rate. Alternating the builds round by round spreads the drift
of a shared VM (other work, the disk's writeback) over both. Prints a markdown table: one row
per build, round and rate.

    cargo build --release -p weir-broker -p weir-benches --bin weir --bin produce-latency
    cp target/release/weir /tmp/weir-a    # build A, then check out and build B
    python3 benches/scripts/latency_ab.py /tmp/weir-a target/release/weir \\
        --rates 20000,100000,200000 --in-flight 1000000 --rounds 2

Stop other work on the machine while it runs: two cores shared with a compiler move p99 by
tens of milliseconds.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

PORT = 19092


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def wait_for_port(port, timeout=30.0):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"no broker on port {port} after {timeout} s")


def measure(weir, tool, rates, seconds, in_flight, root, label):
    data = tempfile.mkdtemp(prefix=f"{label}-", dir=root)
    broker = subprocess.Popen(
        [weir, "broker", "--listeners", f"PLAINTEXT://127.0.0.1:{PORT}", "--log.dirs", data,
         "--weir.admin.listener", "none"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(PORT)
        bootstrap = f"127.0.0.1:{PORT}"
        subprocess.run([weir, "topic", "create", "lat", "-p", "1", "-b", bootstrap],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run([tool, bootstrap, "lat", "20000", "2", str(in_flight)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = []
        for rate in rates:
            before = cpu_seconds(broker.pid)
            out = subprocess.run([tool, bootstrap, "lat", str(rate), str(seconds), str(in_flight)],
                                 check=True, capture_output=True, text=True).stdout
            cpu = cpu_seconds(broker.pid) - before
            fields = dict(re.findall(r"(\w+)=([^\s]+)", out))
            rows.append((rate, fields, cpu))
        return rows
    finally:
        broker.terminate()
        broker.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="the weir binary of build A")
    parser.add_argument("b", help="the weir binary of build B")
    parser.add_argument("--latency-tool", default="target/release/produce-latency")
    parser.add_argument("--rates", default="20000,100000,200000")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--in-flight", type=int, default=1_000_000,
                        help="max.in.flight.requests.per.connection (librdkafka's default)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    root = tempfile.mkdtemp(prefix="weir-latency-ab-")
    print(f"| build | round | offered/s | acknowledged/s | p50 ms | p99 ms | max ms | "
          f"broker CPU s per {args.seconds} s |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for round_ in range(1, args.rounds + 1):
            for label, weir in (("A", args.a), ("B", args.b)):
                for rate, f, cpu in measure(weir, args.latency_tool, rates, args.seconds,
                                            args.in_flight, root, label):
                    print(f"| {label} | {round_} | {rate:,} | {f.get('acknowledged_per_s')} | "
                          f"{f.get('p50_ms')} | {f.get('p99_ms')} | {f.get('max_ms')} | "
                          f"{cpu:.2f} |", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
