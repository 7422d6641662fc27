#!/usr/bin/env python3
"""A count-only CloudWatch Logs endpoint for bench/logs.sh (Python standard library only).

    cw_endpoint.py [--port P] [--validate fast|full] [--check-every N] [--count-substring S]

Listens on 127.0.0.1:P (P = 0: any free port) and prints the port on stdout, then serves the
AWS JSON 1.1 protocol, routed on the `X-Amz-Target` header:

  Logs_20140328.PutLogEvents        200 {"nextSequenceToken":"1"}: events counted, never stored
  Logs_20140328.CreateLogStream     200 {}
  Logs_20140328.CreateLogGroup      200 {}
  Logs_20140328.PutRetentionPolicy  200 {}
  anything else                     400 {"__type":"InvalidOperationException"}

No sequence token and no existing group or stream is required: every PutLogEvents is accepted
and counted. Every PutLogEvents request is checked against the request limits, and each broken
limit is counted as a violation (a benchmark run with violations is invalid):

  * 1 to 10,000 events;
  * Σ(UTF-8 bytes of each message + 26) ≤ 1,048,576 (and no empty message);
  * timestamps non-decreasing (chronological order);
  * last − first timestamp ≤ 24 h.

For every event it records `now_ms − timestamp`, the delivery latency (the load generator stamps
each line with the wall clock at write time), in a 1 ms histogram.

  GET  /stats  {"requests", "events", "bytes" (Σ message bytes), "body_bytes", "violations",
                "violation_reasons", "latency_ms": {"p50", "p99", "max", "count"}, "calls",
                "validator", "put_ms_mean" (wall time from the request's head to its verdict, body
                read included), "put_cpu_ms_mean" (this thread's CPU for that), "cpu_seconds",
                "substring_count"}
  POST /reset  zeroes every counter and the histogram

`--count-substring S`: "substring_count" is the number of times S occurs in the PutLogEvents
bodies as sent (messages are JSON strings there: a record's `"` is `\"`), one bytes.count pass
per body. bench/logs.sh --kube counts `\"pod_ip\":` to check that every event carries the pod's
full metadata (one per record) and that path-metadata runs carry none.

Validation (`--validate`):
  full  (default) json.loads every body: exact. About 2.5 us of CPU per ~470-byte event
        (4.7 ms per 1 MiB request): one core takes ~400k events/s.
  fast  a byte-level validator that is exact for the bodies the AWS SDK writes
        (`{"logGroupName":..,"logStreamName":..,"logEvents":[{"message":"..","timestamp":N},..]}`
        without `\\u` escapes): events counted with bytes.count, timestamps with one regex,
        message bytes from the body length minus the fixed per-event syntax minus one byte per
        escape sequence. Bodies of any other shape go to the full path. Every Nth request
        (`--check-every`, default 25) and the first 5 are also parsed in full and compared; on a
        mismatch the endpoint reports it (`validator.mismatches`) and parses everything in full.
        Measured on the agent's bodies it is NOT cheaper (5.0 vs 4.7 ms of CPU per request):
        exact message bytes need the escapes counted, and each bytes.count/findall pass over a
        1 MiB body costs ~0.5-1.3 ms in CPython, so four passes cost what one json.loads does.
        Kept to cross-check the full path and for hosts where json is slower.
"""

import argparse
import gzip
import json
import os
import re
import socket
import sys
import threading
import time
import zlib
from collections import Counter
from operator import itemgetter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TARGET_PREFIX = "Logs_20140328."
MAX_EVENTS = 10_000
MAX_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_SPAN_MS = 24 * 3600 * 1000

TS_RE = re.compile(rb'"timestamp":(-?[0-9]+)')
EVENTS_KEY = b'"logEvents":['
# `{"message":"` + `","timestamp":` + `}`, or `{"timestamp":` + `,"message":"` + `"}`.
EVENT_SYNTAX = 27


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.requests = 0
            self.events = 0
            self.bytes = 0
            self.body_bytes = 0
            self.violations = 0
            self.reasons = Counter()
            self.samples = []
            self.calls = Counter()
            self.latency = Counter()
            self.slow_path = 0
            self.put_seconds = 0.0
            self.put_cpu = 0.0
            self.checks = 0
            self.mismatches = 0
            self.substring_count = 0
            self.t0 = time.monotonic()


class Validator:
    """Turns a PutLogEvents body into (events, message_bytes, timestamps, problems)."""

    def __init__(self, mode, check_every):
        self.full_only = mode == "full"
        self.check_every = max(1, check_every)
        self.seen = 0

    @staticmethod
    def full(body):
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ValueError("body is not a JSON object")
        evs = doc.get("logEvents")
        if not isinstance(evs, list):
            raise ValueError("logEvents is missing or not a list")
        ts = list(map(itemgetter("timestamp"), evs))
        msgs = list(map(itemgetter("message"), evs))
        if not set(map(type, ts)) <= {int} or not set(map(type, msgs)) <= {str}:
            raise ValueError("an event's timestamp or message has the wrong type")
        nbytes = sum(map(len, msgs))
        if not all(map(str.isascii, msgs)):
            nbytes = sum(len(m.encode("utf-8", "surrogatepass")) for m in msgs)
        empty = 0 if all(msgs) else msgs.count("")
        return len(evs), nbytes, ts, empty

    @staticmethod
    def fast(body):
        """None when the body is not of the simple shape (then the full path decides)."""
        i = body.find(EVENTS_KEY)
        j = body.rfind(b"]")
        if i < 0 or j < i or b"\\u" in body:
            return None
        head, tail = body[:i], body[j:]
        if b"\\" in head or b"\\" in tail or b"logEvents" in tail or tail.rstrip() != b"]}":
            return None
        ev = body[i + len(EVENTS_KEY) : j]
        digits = TS_RE.findall(ev)
        n = len(digits)
        if ev.count(b'"message":"') != n or ev.count(b'"timestamp":') != n:
            return None
        if n == 0:
            return (0, 0, [], 0) if not ev.strip() else None
        encoded = len(ev) - n * EVENT_SYNTAX - sum(map(len, digits)) - (n - 1)
        backslashes = ev.count(b"\\")
        escapes = backslashes - ev.count(b"\\\\")
        empty = ev.count(b'"message":""')
        return n, encoded - escapes, list(map(int, digits)), empty

    def check(self, body, stats):
        self.seen += 1
        if self.full_only:
            return self.full(body), False
        got = self.fast(body)
        if got is None:
            stats.slow_path += 1
            return self.full(body), False
        if self.seen <= 5 or self.seen % self.check_every == 0:
            exact = self.full(body)
            stats.checks += 1
            if exact != got:
                stats.mismatches += 1
                self.full_only = True
                print(f"cw_endpoint: fast validator disagrees with json.loads "
                      f"(fast n={got[0]} bytes={got[1]}; exact n={exact[0]} bytes={exact[1]}); "
                      f"parsing every body in full from now on", file=sys.stderr, flush=True)
                return exact, True
        return got, False


def problems_of(n, nbytes, ts, empty):
    out = []
    if n == 0:
        out.append("no_events")
    if n > MAX_EVENTS:
        out.append("too_many_events")
    if nbytes + EVENT_OVERHEAD * n > MAX_BYTES:
        out.append("too_many_bytes")
    if empty:
        out.append("empty_message")
    if ts:
        if ts != sorted(ts):
            out.append("not_chronological")
        if max(ts) - min(ts) > MAX_SPAN_MS:
            out.append("span_over_24h")
    return out


def percentile(hist, total, q):
    if total == 0:
        return None
    want = max(1, int(total * q + 0.999999))
    acc = 0
    for k in sorted(hist):
        acc += hist[k]
        if acc >= want:
            return k
    return max(hist)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One send per response (headers and body together): no Nagle / delayed-ACK stalls.
    wbufsize = 1 << 16
    server_version = "cw-endpoint"
    sys_version = ""

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/x-amz-json-1.1", error_type=None):
        data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type)
        self.end_headers()
        self.wfile.write(data)

    def read_exactly(self, n):
        """The next n bytes: what the header reader buffered, then one recv(MSG_WAITALL). One
        blocking call per body matters: each wake-up must take the GIL back from the thread
        that is parsing, which costs up to the switch interval (5 ms) every time."""
        buf = bytearray(n)
        view = memoryview(buf)
        got = self.rfile.readinto1(view) if n else 0
        while got < n:
            r = self.connection.recv_into(view[got:], n - got, socket.MSG_WAITALL)
            if r == 0:
                raise ConnectionError("connection closed inside a request body")
            got += r
        return bytes(buf)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(parts)
        else:
            body = self.read_exactly(int(self.headers.get("Content-Length") or 0))
        enc = self.headers.get("Content-Encoding", "").lower()
        if enc == "gzip":
            body = gzip.decompress(body)
        elif enc == "deflate":
            body = zlib.decompress(body)
        return body

    def do_GET(self):
        if self.path.split("?")[0] != "/stats":
            self.reply(404, {"error": "not found"}, "application/json")
            return
        st = self.server.stats
        with st.lock:
            total = sum(st.latency.values())
            t = os.times()
            out = {
                "requests": st.requests,
                "events": st.events,
                "bytes": st.bytes,
                "body_bytes": st.body_bytes,
                "violations": st.violations,
                "violation_reasons": dict(st.reasons),
                "violation_samples": st.samples,
                "latency_ms": {
                    "p50": percentile(st.latency, total, 0.50),
                    "p99": percentile(st.latency, total, 0.99),
                    "max": max(st.latency) if st.latency else None,
                    "count": total,
                },
                "calls": dict(st.calls),
                "validator": {
                    "mode": "full" if self.server.validator.full_only else "fast",
                    "slow_path": st.slow_path,
                    "checks": st.checks,
                    "mismatches": st.mismatches,
                },
                "put_ms_mean": round(st.put_seconds / max(1, st.requests) * 1000, 2),
                "put_cpu_ms_mean": round(st.put_cpu / max(1, st.requests) * 1000, 2),
                "cpu_seconds": round(t.user + t.system, 3),
                "substring_count": st.substring_count,
                "seconds_since_reset": round(time.monotonic() - st.t0, 3),
            }
        self.reply(200, out, "application/json")

    def do_POST(self):
        if self.path.split("?")[0] == "/reset":
            self.read_body()
            self.server.stats.reset()
            self.reply(200, {"reset": True}, "application/json")
            return
        target = self.headers.get("X-Amz-Target", "")
        self.t_start = time.perf_counter()
        self.c_start = time.thread_time()
        body = self.read_body()
        st = self.server.stats
        op = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else None
        if op == "PutLogEvents":
            self.put_log_events(body, st)
        elif op in ("CreateLogStream", "CreateLogGroup", "PutRetentionPolicy"):
            with st.lock:
                st.calls[op] += 1
            self.reply(200, b"{}")
        else:
            with st.lock:
                st.calls["invalid:" + (target or "<none>")] += 1
            self.reply(400, b'{"__type":"InvalidOperationException"}',
                       error_type="InvalidOperationException")

    def put_log_events(self, body, st):
        try:
            (n, nbytes, ts, empty), _ = self.server.validator.check(body, st)
            problems = problems_of(n, nbytes, ts, empty)
        except (ValueError, KeyError, TypeError) as e:
            n, nbytes, ts, problems = 0, 0, [], [f"malformed: {e}"[:200]]
        pattern = self.server.count_substring
        found = body.count(pattern) if pattern else 0
        now_ms = time.time_ns() // 1_000_000
        lat = Counter(map(now_ms.__sub__, ts))
        with st.lock:
            st.calls["PutLogEvents"] += 1
            st.requests += 1
            st.events += n
            st.bytes += nbytes
            st.body_bytes += len(body)
            st.substring_count += found
            st.put_seconds += time.perf_counter() - self.t_start
            st.put_cpu += time.thread_time() - self.c_start
            st.latency.update(lat)
            if problems:
                st.violations += 1
                st.reasons.update(problems)
                if len(st.samples) < 10:
                    st.samples.append({"events": n, "bytes": nbytes + EVENT_OVERHEAD * n,
                                       "problems": problems})
        self.reply(200, b'{"nextSequenceToken":"1"}')


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--validate", choices=("fast", "full"), default="full")
    ap.add_argument("--check-every", type=int, default=25)
    ap.add_argument("--count-substring", default="")
    args = ap.parse_args()
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.stats = Stats()
    srv.validator = Validator(args.validate, args.check_every)
    srv.count_substring = args.count_substring.encode()
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
