#!/usr/bin/python3
"""A gzip bomb against a real sheafd, sent by a raw HTTP/2 client (h2).

gRPC 1.51 inflates a whole compressed message before it checks the size
limit: a 4 MB Push message inflating to 4 GiB once drove sheafd to a 4.9 GB
peak RSS. sheafd now inflates requests itself and stops at the limit. This
test sends a message of ~1 MiB that inflates to 1 GiB (built in pieces, so
the test itself stays small), and asserts the answer is RESOURCE_EXHAUSTED,
that sheafd's peak RSS grew by far less than the bomb, and that sheafd then
still stores a normal batch.

Prints '1 passed, 0 failed' or exits non-zero with the reason.
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


def grpc_call(port, path, payload, compressed, timeout=30):
    """One unary-or-streaming gRPC request with one message; returns the
    grpc-status and grpc-message from the trailers (or headers)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    # Room to send the whole message without waiting for window updates.
    conn.increment_flow_control_window(1 << 30)
    sock.sendall(conn.data_to_send())
    headers = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
               ("content-type", "application/grpc"), ("te", "trailers")]
    if compressed:
        headers.append(("grpc-encoding", "gzip"))
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, headers)
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


def metric_batch(agent, seq, name, ts_ms):
    """A MetricBatch with one inline series, hand-encoded (protobuf wire)."""
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

    label = ld(1, b"__name__") + ld(2, name.encode())
    sample = field(1, 0, varint(ts_ms)) + field(2, 1, struct.pack("<d", 1.0))
    series = ld(1, label) + field(2, 0, varint(2)) + ld(3, sample)
    return ld(1, agent.encode()) + field(2, 0, varint(seq)) + ld(5, series)


def main():
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        ready = os.path.join(tmp, "ready")
        log = open(os.path.join(tmp, "sheafd.log"), "w")
        proc = subprocess.Popen([SHEAFD, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                 "--data-dir", os.path.join(tmp, "data"), "--ready-file", ready,
                                 "--wal-sync=false"], stdout=log, stderr=log)
        try:
            deadline = time.time() + 30
            while not os.path.exists(ready):
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("sheafd did not start; see its log")
                time.sleep(0.05)
            fields = dict(line.split("=") for line in open(ready).read().split())
            port = int(fields["grpc_port"])
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
            # Still serving: a normal compressed batch is stored.
            batch = zlib.compressobj(6, zlib.DEFLATED, 16 + 15)
            good = batch.compress(metric_batch("after-bomb", 1, "up", int(time.time() * 1000))) + batch.flush()
            status, message = grpc_call(port, "/sheaf.v1.IngestService/Push", good, compressed=True)
            if status != 0:
                failures.append("a normal batch after the bomb got %s %r" % (status, message))
            if proc.poll() is not None:
                failures.append("sheafd exited")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            if failures:
                sys.stdout.write(open(os.path.join(tmp, "sheafd.log")).read()[-4000:])
    for f in failures:
        print("FAIL: " + f)
    print("%d passed, %d failed" % (0 if failures else 1, 1 if failures else 0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
