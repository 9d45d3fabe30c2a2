#!/usr/bin/python3
"""Hostile wire input against a real sheafd, from a raw HTTP/2 client (h2).

- A gzip bomb: gRPC 1.51 inflates a whole compressed message before it
  checks the size limit; a 4 MB Push message inflating to 4 GiB once drove
  sheafd to a 4.9 GB peak RSS. sheafd inflates requests itself and stops at
  the limit: a ~1 MiB message inflating to 1 GiB must be RESOURCE_EXHAUSTED
  and barely move sheafd's peak RSS.
- What an earlier probe found right, kept as regressions: a compressed flag
  without a grpc-encoding fails the call; an oversize plain message is
  RESOURCE_EXHAUSTED; 500 idle streams and never-reading query clients cost
  no memory to speak of; and after all that sheafd still stores a batch.

Prints 'N passed, N failed'; exits non-zero on any failure.
"""
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import h2.config
import h2.connection
import h2.events

SHEAFD = os.environ["SHEAFD"]
BOMB_BYTES = 1 << 30      # what the message inflates to
MAX_RSS_GROWTH = 200 << 20  # sheafd's limit is 16 MiB; allow slack for gRPC and RocksDB


def gzip_of_zeros(size):
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + 15)
    chunk = bytes(1 << 20)
    parts = [z.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(z.flush())
    return b"".join(parts)


def connect(port, timeout=10):
    """An HTTP/2 client connection to sheafd: (socket, h2 connection)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    return sock, conn


def start_call(conn, path, compressed=False, encoding=True):
    """Sends a gRPC call's headers; returns its stream id."""
    headers = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
               ("content-type", "application/grpc"), ("te", "trailers")]
    if compressed and encoding:
        headers.append(("grpc-encoding", "gzip"))
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, headers)
    return stream


def open_call(port, path, payload, compressed, encoding=True):
    """Starts a call and sends its one message, reading nothing back (as a
    client that never reads would). Returns the socket, kept open."""
    sock, conn = connect(port)
    stream = start_call(conn, path, compressed, encoding)
    conn.send_data(stream, bytes([1 if compressed else 0]) + len(payload).to_bytes(4, "big") + payload,
                   end_stream=True)
    sock.sendall(conn.data_to_send())
    return sock


def idle_streams(port, streams):
    """One connection with `streams` Push calls opened and left silent."""
    sock, conn = connect(port)
    for _ in range(streams):
        start_call(conn, "/sheaf.v1.IngestService/Push")
    sock.sendall(conn.data_to_send())
    return sock


def grpc_call(port, path, payload, compressed, timeout=30, encoding=True):
    """One unary-or-streaming gRPC request with one message; returns the
    grpc-status and grpc-message from the trailers (or headers)."""
    sock, conn = connect(port, timeout)
    # Room to send the whole message without waiting for window updates.
    conn.increment_flow_control_window(1 << 30)
    sock.sendall(conn.data_to_send())
    stream = start_call(conn, path, compressed, encoding)
    frame = bytes([1 if compressed else 0]) + len(payload).to_bytes(4, "big") + payload
    sent = 0
    status = None
    message = ""
    deadline = time.time() + timeout
    ended = False
    while time.time() < deadline and status is None:
        # Send what the flow-control window allows, then read.
        while sent < len(frame):
            window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
            if window <= 0:
                break
            piece = frame[sent:sent + window]
            conn.send_data(stream, piece)
            sent += len(piece)
        if sent == len(frame) and not ended:
            conn.end_stream(stream)
            ended = True
        sock.sendall(conn.data_to_send())
        data = sock.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                fields = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                          for k, v in event.headers}
                if "grpc-status" in fields:
                    status = int(fields["grpc-status"])
                    message = fields.get("grpc-message", "")
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                status = -1
                message = "stream reset (error code %d)" % event.error_code
        sock.sendall(conn.data_to_send())
    sock.close()
    return status, message


def peak_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def varint(n):
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


def field(num, wire, body):
    return varint(num << 3 | wire) + body


def ld(num, body):
    return field(num, 2, varint(len(body)) + body)


def metric_batch(agent, seq, name, timestamps):
    """A MetricBatch with one inline gauge series, hand-encoded (protobuf wire)."""
    label = ld(1, b"__name__") + ld(2, name.encode())
    series = ld(1, label) + field(2, 0, varint(2))
    for ts in timestamps:
        series += ld(3, field(1, 0, varint(ts)) + field(2, 1, struct.pack("<d", 1.0)))
    return ld(1, agent.encode()) + field(2, 0, varint(seq)) + ld(5, series)


def query_request(selector, start_ms, end_ms):
    return ld(2, selector.encode()) + field(3, 0, varint(start_ms)) + field(4, 0, varint(end_ms))


def start_sheafd(tmp, log, *flags):
    """sheafd on loopback ports with its data in tmp, output to log and
    `flags` added, once it is ready (30 s at most; stopped if it is not):
    (process, gRPC port, HTTP port). Also used by h2_probe_test."""
    ready = os.path.join(tmp, "ready")
    proc = subprocess.Popen([SHEAFD, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                             "--data-dir", os.path.join(tmp, "data"), "--ready-file", ready,
                             "--wal-sync=false", *flags], stdout=log, stderr=log)
    deadline = time.time() + 30
    while not os.path.exists(ready):
        if time.time() > deadline or proc.poll() is not None:
            stop_sheafd(proc)
            raise RuntimeError("sheafd did not start; see its log")
        time.sleep(0.05)
    fields = dict(line.split("=") for line in open(ready).read().split())
    return proc, int(fields["grpc_port"]), int(fields["http_port"])


def stop_sheafd(proc):
    """SIGTERM, then SIGKILL if sheafd has not exited within 30 s."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main():
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        log = open(os.path.join(tmp, "sheafd.log"), "w")
        proc, port, _ = start_sheafd(tmp, log)
        try:
            before = peak_rss(proc.pid)
            bomb = gzip_of_zeros(BOMB_BYTES)
            status, message = grpc_call(port, "/sheaf.v1.IngestService/Push", bomb, compressed=True)
            after = peak_rss(proc.pid)
            print("bomb: %d bytes compressed, %d inflated; answer %s %r; sheafd peak RSS %d -> %d MiB"
                  % (len(bomb), BOMB_BYTES, status, message, before >> 20, after >> 20))
            if status != 8:  # RESOURCE_EXHAUSTED
                failures.append("the bomb was answered with %s %r, not RESOURCE_EXHAUSTED (8)" % (status, message))
            if after - before > MAX_RSS_GROWTH:
                failures.append("sheafd's peak RSS grew by %d MiB" % ((after - before) >> 20))
            # A compressed message without a grpc-encoding header: sheafd cannot
            # know the algorithm, reads the bytes as they are, and they are no
            # MetricBatch: INVALID_ARGUMENT, nothing stored. (gRPC itself reset
            # such streams while it decompressed; sheafd decodes requests now.)
            z = zlib.compressobj(6, zlib.DEFLATED, 16 + 15)
            gz = z.compress(metric_batch("flag", 1, "up", [int(time.time() * 1000)])) + z.flush()
            status, message = grpc_call(port, "/sheaf.v1.IngestService/Push", gz, compressed=True, encoding=False)
            print("compressed message without grpc-encoding: %s %r" % (status, message))
            if status != 3:
                failures.append("a compressed message without grpc-encoding got %s %r, not INVALID_ARGUMENT"
                                % (status, message))
            # An oversize plain message: RESOURCE_EXHAUSTED.
            status, message = grpc_call(port, "/sheaf.v1.IngestService/Push", bytes(17 << 20), compressed=False)
            print("17 MiB plain message: %s %r" % (status, message))
            if status != 8:
                failures.append("an oversize message got %s %r, not RESOURCE_EXHAUSTED" % (status, message))
            # 500 idle streams, then 20 query clients that never read.
            now = int(time.time() * 1000)
            status, message = grpc_call(port, "/sheaf.v1.IngestService/Push",
                                        metric_batch("big", 1, "wide", [now - 3_000_000 + i * 60 for i in range(50_000)]),
                                        compressed=False)
            if status != 0:
                failures.append("storing 50,000 samples failed: %s %r" % (status, message))
            before = peak_rss(proc.pid)
            held = [idle_streams(port, 100) for _ in range(5)]
            held += [open_call(port, "/sheaf.v1.QueryService/Query", query_request("wide", now - 4_000_000, now),
                               compressed=False) for _ in range(20)]
            time.sleep(2)  # let sheafd do whatever it would do with them
            after = peak_rss(proc.pid)
            print("500 idle streams and 20 never-reading queries: peak RSS %d -> %d MiB" % (before >> 20, after >> 20))
            if after - before > 100 << 20:
                failures.append("idle streams and stalled queries grew sheafd's peak RSS by %d MiB"
                                % ((after - before) >> 20))
            for sock in held:
                sock.close()
            # Still serving: a normal compressed batch is stored.
            batch = zlib.compressobj(6, zlib.DEFLATED, 16 + 15)
            good = batch.compress(metric_batch("after", 1, "up", [int(time.time() * 1000)])) + batch.flush()
            status, message = grpc_call(port, "/sheaf.v1.IngestService/Push", good, compressed=True)
            if status != 0:
                failures.append("a normal batch after all that got %s %r" % (status, message))
            if proc.poll() is not None:
                failures.append("sheafd exited")
        finally:
            stop_sheafd(proc)
            log.close()
            if failures:
                sys.stdout.write(open(os.path.join(tmp, "sheafd.log")).read()[-4000:])
    for f in failures:
        print("FAIL: " + f)
    print("%d passed, %d failed" % (0 if failures else 1, 1 if failures else 0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
