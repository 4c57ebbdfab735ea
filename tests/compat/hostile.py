#!/usr/bin/env python3
"""Hostile input against a running broker.

Each attack runs on its own connections: random bytes, random frames, huge and negative size
prefixes (2 GiB), truncated frames, unknown API keys and versions, negative and huge array and
string lengths, and thousands of idle connections. A complete bad frame must be answered or its
connection closed within a few seconds (never left hanging); a torn frame followed by EOF must
be closed. After every attack: the process is alive, its RSS (/proc/PID/status VmRSS) stays
under the bound, a connection opened before the attacks still gets answers, and a fresh
connection gets an ApiVersions answer.

Usage: python hostile.py [--bootstrap HOST:PORT] [--pid PID] [--max-rss-mib 200]
       [--idle-connections 2500]
Without --pid the process and RSS checks are skipped (the broker may run elsewhere).
Prints a PASS/FAIL line per attack and a summary; exits 0 when all pass.
"""
import argparse
import os
import random
import resource
import socket
import struct
import sys
import time

API_VERSIONS, METADATA, PRODUCE = 18, 3, 0
UNSUPPORTED_VERSION = 35
ANSWER_TIMEOUT = 5.0


class Failure(Exception):
    pass


# --- encoding --------------------------------------------------------------------------------

def uvarint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def header(api_key, version, correlation_id, flexible, client_id=b"weir-hostile"):
    """Request header v1 (or v2 with an empty tag buffer when flexible)."""
    h = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    return h + (b"\x00" if flexible else b"")


def frame(body):
    return struct.pack(">i", len(body)) + body


def api_versions_request(version, correlation_id):
    if version >= 3:
        body = uvarint(len(b"weir-hostile") + 1) + b"weir-hostile" + uvarint(2) + b"1" + b"\x00"
        return frame(header(API_VERSIONS, version, correlation_id, True) + body)
    return frame(header(API_VERSIONS, version, correlation_id, False))


# --- connections -----------------------------------------------------------------------------

def connect(addr, timeout=5.0):
    s = socket.create_connection(addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def outcome(sock, timeout=ANSWER_TIMEOUT):
    """('closed', None), ('answered', body) or ('open', None) if neither within timeout."""
    sock.settimeout(timeout)
    try:
        size = recv_exact(sock, 4)
        if size is None:
            return "closed", None
        (n,) = struct.unpack(">i", size)
        if n < 0 or n > 64 << 20:
            raise Failure(f"the broker sent a response size prefix of {n}")
        body = recv_exact(sock, n)
        return ("closed", None) if body is None else ("answered", body)
    except socket.timeout:
        return "open", None
    except (ConnectionResetError, BrokenPipeError):
        return "closed", None


def api_versions(sock, version=3, correlation_id=7):
    """Sends ApiVersions and returns (error_code, api_key_count); raises Failure otherwise."""
    sock.sendall(api_versions_request(version, correlation_id))
    state, body = outcome(sock)
    if state != "answered":
        raise Failure(f"ApiVersions v{version}: connection {state} instead of an answer")
    corr, error = struct.unpack(">ih", body[:6])
    if corr != correlation_id:
        raise Failure(f"ApiVersions v{version}: correlation id {corr}, sent {correlation_id}")
    count = uvarint_decode(body, 6)[0] - 1 if version >= 3 else struct.unpack(">i", body[6:10])[0]
    return error, count


def uvarint_decode(data, pos):
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


# --- the checks after each attack ------------------------------------------------------------

class Broker:
    def __init__(self, addr, pid, max_rss_kib):
        self.addr = addr
        self.pid = pid
        self.max_rss_kib = max_rss_kib
        self.peak_rss_kib = 0
        self.bystander = connect(addr)
        self.bystander_corr = 1000

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("State:") and "Z" in line.split()[1]:
                    raise Failure(f"broker pid {self.pid} is a zombie (exited)")
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise Failure("no VmRSS line")

    def check(self):
        """The broker is alive, small, and still serving old and new connections."""
        if self.pid:
            try:
                os.kill(self.pid, 0)
                rss = self.rss_kib()
            except (ProcessLookupError, FileNotFoundError):
                raise Failure(f"broker pid {self.pid} is gone")
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            if rss > self.max_rss_kib:
                raise Failure(f"broker RSS {rss // 1024} MiB over the bound "
                              f"{self.max_rss_kib // 1024} MiB")
        self.bystander_corr += 1
        error, count = api_versions(self.bystander, 3, self.bystander_corr)
        if error != 0 or count < 2:
            raise Failure(f"bystander connection: ApiVersions error {error}, {count} APIs")
        with connect(self.addr) as fresh:
            error, count = api_versions(fresh, 3)
            if error != 0 or count < 2:
                raise Failure(f"fresh connection: ApiVersions error {error}, {count} APIs")
        return f"rss {self.rss_kib() // 1024} MiB" if self.pid else "no pid given"


def expect_closed_or_answered(addr, data, what, half_close=False):
    """Sends data on a new connection; the broker must answer or close it (not hang)."""
    with connect(addr) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:  # reset, broken pipe, or not connected: the broker already closed it
            return "closed"
        state, _ = outcome(s)
        if state == "open":
            raise Failure(f"{what}: neither answered nor closed within {ANSWER_TIMEOUT}s")
        if half_close and state == "answered":
            # Answers are fine; after them the broker must still notice EOF and close.
            while state == "answered":
                state, _ = outcome(s)
            if state == "open":
                raise Failure(f"{what}: EOF from the client, yet the connection stays open")
        return state


def expect_closed(addr, data, what):
    """The broker must close this connection without waiting for more bytes."""
    state = expect_closed_or_answered(addr, data, what)
    if state != "closed":
        raise Failure(f"{what}: answered instead of closing the connection")


# --- attacks ---------------------------------------------------------------------------------

def random_bytes(addr, rng):
    """Random byte streams (any size prefix), then EOF: the broker must close each."""
    for i in range(30):
        data = rng.randbytes(rng.randint(1, 65536))
        expect_closed_or_answered(addr, data, f"random stream {i}", half_close=True)
    return "30 random streams of up to 64 KiB closed"


def random_frames(addr, rng):
    """Well-framed random bodies, some behind a valid request header."""
    states = {"closed": 0, "answered": 0}
    for i in range(150):
        body = rng.randbytes(rng.randint(0, 4096))
        if i % 3 == 1:  # a plausible header for a real API and version, then garbage
            api, version = rng.choice([(PRODUCE, 9), (METADATA, 12), (1, 12), (11, 5), (8, 8)])
            body = header(api, version, i, flexible=True) + body
        elif i % 3 == 2:  # a non-flexible header
            api, version = rng.choice([(PRODUCE, 7), (METADATA, 4), (1, 11), (11, 5)])
            body = header(api, version, i, flexible=False) + body
        states[expect_closed_or_answered(addr, frame(body), f"random frame {i}")] += 1
    return f"150 random frames: {states['closed']} closed, {states['answered']} answered"


def huge_sizes(addr, rng):
    """2 GiB and other oversized or negative size prefixes: closed before any body arrives."""
    for prefix in [0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x40000000, 0x10000000, 0xFFFFFFFE]:
        data = struct.pack(">I", prefix) + header(API_VERSIONS, 3, 1, True)
        expect_closed(addr, data, f"size prefix {prefix:#x}")
    return "2 GiB, 1 GiB, 256 MiB and negative size prefixes closed at once"


def truncated_frames(addr, rng):
    """Frames cut short (then EOF), and frames whose stated size cuts the header or body."""
    metadata = header(METADATA, 12, 5, True) + uvarint(2) + b"\x00" * 16 + uvarint(4) + b"t-1" \
        + b"\x00" + b"\x01\x00\x00"
    full = frame(metadata)
    for cut in [1, 3, 4, 5, 9, 12, len(full) // 2, len(full) - 1]:
        expect_closed_or_answered(addr, full[:cut], f"torn frame at byte {cut}", half_close=True)
    # Complete frames that hold only part of a header or body.
    for cut in [0, 1, 3, 7, 9, 14, len(metadata) - 3, len(metadata) - 1]:
        expect_closed_or_answered(addr, frame(metadata[:cut]), f"frame cut to {cut} bytes")
    return "torn frames closed on EOF; short headers and bodies answered or closed"


def unknown_apis(addr, rng):
    """Unknown API keys and unsupported versions."""
    for api, version in [(9999, 0), (-1, 0), (32767, 3), (100, 0), (METADATA, 127),
                         (METADATA, -1), (PRODUCE, 0), (PRODUCE, 99)]:
        body = header(api, version, 3, flexible=False) + b"\x00" * 8
        expect_closed_or_answered(addr, frame(body), f"API {api} v{version}")
    # Kafka answers an unsupported ApiVersions version with UNSUPPORTED_VERSION in v0 form.
    for version in [127, 5, 32767]:
        with connect(addr) as s:
            s.sendall(frame(header(API_VERSIONS, version, 9, True) + b"\x00\x00\x00"))
            state, body = outcome(s)
            if state != "answered":
                raise Failure(f"ApiVersions v{version}: {state} instead of UNSUPPORTED_VERSION")
            corr, error = struct.unpack(">ih", body[:6])
            if corr != 9 or error != UNSUPPORTED_VERSION:
                raise Failure(f"ApiVersions v{version}: correlation {corr} error {error}, "
                              f"expected 9 and UNSUPPORTED_VERSION ({UNSUPPORTED_VERSION})")
    return "unknown keys and versions answered or closed; ApiVersions v127 -> UNSUPPORTED_VERSION"


def bad_lengths(addr, rng):
    """Negative and huge array counts and string lengths."""
    cases = {
        # Metadata v4 (non-flexible): topics array of -5 entries (only -1, null, is valid).
        "Metadata v4 topics=-5": header(METADATA, 4, 1, False) + struct.pack(">i", -5) + b"\x01",
        "Metadata v4 topics=2^31-1": header(METADATA, 4, 1, False)
        + struct.pack(">i", 0x7FFFFFFF) + b"\x00\x03abc",
        # Produce v7: transactional_id null, acks 1, timeout 1000, topics array of -7.
        "Produce v7 topics=-7": header(PRODUCE, 7, 1, False)
        + struct.pack(">hhii", -1, 1, 1000, -7),
        "Produce v7 topics=2^31-1": header(PRODUCE, 7, 1, False)
        + struct.pack(">hhii", -1, 1, 1000, 0x7FFFFFFF),
        # Produce v7 with one topic whose name claims -3 bytes.
        "Produce v7 name length -3": header(PRODUCE, 7, 1, False)
        + struct.pack(">hhiih", -1, 1, 1000, 1, -3),
        # Produce v7 with a records field claiming 2^31-1 bytes.
        "Produce v7 records=2^31-1": header(PRODUCE, 7, 1, False)
        + struct.pack(">hhiih", -1, 1, 1000, 1, 1) + b"t"
        + struct.pack(">iii", 1, 0, 0x7FFFFFFF) + b"\x00" * 8,
        # Flexible Metadata v12: a compact array of 2^32-2 topics.
        "Metadata v12 topics=2^32-2": header(METADATA, 12, 1, True) + uvarint(0xFFFFFFFF),
        # Flexible: a compact string of 2^31 bytes as a topic name.
        "Metadata v12 name=2^31": header(METADATA, 12, 1, True) + uvarint(2)
        + b"\x00" * 16 + uvarint(0x80000001),
        # Header: client_id length -5 (only -1, null, is valid).
        "header client_id=-5": struct.pack(">hhih", METADATA, 4, 1, -5) + b"\x00" * 8,
        "header client_id=32767": struct.pack(">hhih", METADATA, 4, 1, 32767) + b"ab",
        # A varint that never ends.
        "endless varint": header(METADATA, 12, 1, True) + b"\xff" * 64,
    }
    for what, body in cases.items():
        expect_closed_or_answered(addr, frame(body), what)
    return f"{len(cases)} negative/huge lengths answered or closed"


def idle_connections(addr, rng, count):
    """Thousands of idle connections at once; the broker keeps serving, its RSS stays small."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 256
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, min(hard, 1 << 20)),
                                                        max(hard, want)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    socks = []
    try:
        for i in range(count):
            socks.append(connect(addr))
        # Some of them (they must have been accepted, not just queued) answer.
        for i in range(0, count, count // 20):
            error, n = api_versions(socks[i], 3, correlation_id=i + 1)
            if error != 0:
                raise Failure(f"idle connection {i}: ApiVersions error {error}")
        alive = BROKER.check()
    finally:
        for s in socks:
            s.close()
    return f"{count} idle connections open, 20 of them answered, {alive}"


ATTACKS = [random_bytes, random_frames, huge_sizes, truncated_frames, unknown_apis, bad_lengths]


def main():
    global BROKER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="localhost:9092")
    parser.add_argument("--pid", type=int, default=0)
    parser.add_argument("--max-rss-mib", type=int, default=200)
    parser.add_argument("--idle-connections", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    host, port = args.bootstrap.rsplit(":", 1)
    addr = (host, int(port))
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    print(f"hostile: broker {args.bootstrap} pid {args.pid or '-'} seed {seed}", flush=True)

    passed = failed = 0
    try:
        BROKER = Broker(addr, args.pid, args.max_rss_mib * 1024)
        print(f"hostile: before: {BROKER.check()}", flush=True)
    except (Failure, OSError) as e:
        print(f"hostile: FAIL: the broker does not answer before any attack: {e}")
        print("hostile: 0 passed, 1 failed")
        return 1
    attacks = [(a.__name__, lambda a=a: a(addr, rng)) for a in ATTACKS]
    attacks.append(("idle_connections",
                    lambda: idle_connections(addr, rng, args.idle_connections)))
    for name, attack in attacks:
        started = time.time()
        try:
            detail = attack()
            after = BROKER.check()
            passed += 1
            print(f"hostile: PASS {name}: {detail}; after: {after} "
                  f"({time.time() - started:.1f}s)", flush=True)
        except (Failure, OSError) as e:
            failed += 1
            print(f"hostile: FAIL {name}: {e!r} ({time.time() - started:.1f}s)", flush=True)
            try:  # a broken bystander should not fail every later attack
                BROKER.bystander = connect(addr)
            except OSError:
                pass
    if args.pid:
        print(f"hostile: peak RSS {BROKER.peak_rss_kib // 1024} MiB "
              f"(bound {args.max_rss_mib} MiB)")
    print(f"hostile: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
