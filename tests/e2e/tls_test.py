#!/usr/bin/python3
"""TLS and mutual TLS on a real sheafd's gRPC and HTTP ports, with real clients.

Certificates are made at test time with Debian's openssl (no key is committed):
a CA, a second CA, server certificates for 127.0.0.1 and localhost, client
certificates from either CA. Checks:

- TLS: sheafctl import (Push) and query through sheafd with --tls-ca,
  sheaf-loadgen and sheaf-agent too; HTTPS /metrics from Python with the CA.
- A client trusting the wrong CA fails with UNAVAILABLE and a message about
  the certificate; a plaintext client fails too; HTTPS with the wrong CA fails.
- Rotation: the files are replaced and sheafd gets SIGHUP; new connections on
  both ports get the new certificate (its serial), a kept-alive HTTPS
  connection and a gRPC tail stream opened before go on working.
- A bad pair at SIGHUP (key of another certificate; a missing file) is logged
  naming the file and the pair served before stays.
- Mutual TLS: a client certificate from the CA works on both ports; none, or
  one from the other CA, is refused on both.
- --token-file: the token arrives as "authorization: Bearer ..." metadata, on
  a plaintext loopback channel (seen by a small HTTP/2 server, Debian's h2).
- Rotation under a running sheaf-agent (not --count; mTLS and a token,
  --tls-refresh-interval 1s): (a) its token file is replaced and sheafd's
  --auth-tokens drops the old token (SIGHUP): its samples keep arriving;
  (b) both CAs rotate: sheafd's certificate is reissued by a new CA and its
  --tls-client-ca becomes that CA alone (SIGHUP; the old client certificate
  is refused from then on), the agent's --tls-ca file gains the new CA and
  its key and certificate are replaced by one from the new CA; sheafd
  restarts on the same port (so the agent must handshake again) and the
  agent's samples keep arriving: it verified the new server certificate and
  presented its new one, without a restart.
- Listening on a non-loopback address without TLS exits non-zero naming
  --insecure; with --insecure sheafd starts and warns.

Prints 'N passed, N failed'; exits non-zero on any failure.
"""
import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import h2.config
import h2.connection
import h2.events

import fault_support
from fault_support import wait_for

SHEAFD = os.environ["SHEAFD"]
SHEAFCTL = os.environ["SHEAFCTL"]
SHEAF_AGENT = os.environ["SHEAF_AGENT"]
SHEAF_LOADGEN = os.environ["SHEAF_LOADGEN"]



def check(ok, what):
    fault_support.check(what, ok)


def any_failed():
    return not all(fault_support.results)


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class Pki:
    """Throwaway CAs and certificates in `dir` (EC P-256: fast to make)."""

    def __init__(self, dir):
        self.dir = dir

    def path(self, name, ext):
        return os.path.join(self.dir, name + "." + ext)

    def ca(self, name):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", self.path(name, "key"), "-out", self.path(name, "pem"), "-days", "2",
                "-subj", "/CN=" + name)

    def cert(self, name, ca, serial, server):
        ext = self.path(name, "ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n")
            if server:
                f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
            else:
                f.write("extendedKeyUsage=clientAuth\n")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", self.path(name, "key"), "-out", self.path(name, "csr"), "-subj", "/CN=" + name)
        openssl("x509", "-req", "-in", self.path(name, "csr"), "-CA", self.path(ca, "pem"), "-CAkey",
                self.path(ca, "key"), "-set_serial", str(serial), "-days", "2", "-extfile", ext,
                "-out", self.path(name, "pem"))


class Sheafd:
    def __init__(self, tmp, name, args, grpc_listen="127.0.0.1:0"):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        self.ready = os.path.join(self.dir, "ready")
        self.log_path = os.path.join(self.dir, "sheafd.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([SHEAFD, "--grpc-listen", grpc_listen, "--http-listen", "127.0.0.1:0",
                                      "--data-dir", os.path.join(self.dir, "data"), "--ready-file", self.ready,
                                      "--wal-sync=false", "--grace-period", "1s"] + args,
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while not os.path.exists(self.ready):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("sheafd did not start:\n" + self.log_text())
            time.sleep(0.05)
        fields = dict(line.split("=") for line in open(self.ready).read().split())
        self.grpc_port = int(fields["grpc_port"])
        self.http_port = int(fields["http_port"])
        self.addr = "127.0.0.1:%d" % self.grpc_port

    def log_text(self):
        return open(self.log_path).read()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def run(argv, timeout=20, stdin=None):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=stdin)


def ctl(daemon, tls, *args, stdin=None):
    return run([SHEAFCTL, "--addr", daemon.addr, "--timeout", "5s"] + tls + list(args), stdin=stdin)


def tls_context(ca, cert=None):
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    return ctx


def peer_serial(port, ca, cert=None, alpn=None):
    """A new TLS connection's server certificate serial (int)."""
    ctx = tls_context(ca, cert)
    if alpn:
        ctx.set_alpn_protocols([alpn])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return int(s.getpeercert()["serialNumber"], 16)


def https_get(port, ca, cert=None, path="/metrics"):
    """(status, body) of one GET over a new HTTPS connection; raises on TLS errors."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=tls_context(ca, cert), timeout=5)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def https_fails(port, ca, cert=None):
    try:
        https_get(port, ca, cert)
        return False, "answered"
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return True, repr(e)


def token_server(seen):
    """A plaintext HTTP/2 server on loopback that records each request's
    headers and answers UNIMPLEMENTED. Returns its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve():
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            sock.settimeout(5)
            try:
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.RequestReceived):
                            seen.append(dict((k.decode() if isinstance(k, bytes) else k,
                                              v.decode() if isinstance(v, bytes) else v) for k, v in event.headers))
                            conn.send_headers(event.stream_id, [(":status", "200"), ("content-type", "application/grpc"),
                                                                ("grpc-status", "12"), ("grpc-message", "test")],
                                              end_stream=True)
                    sock.sendall(conn.data_to_send())
            except (OSError, h2.exceptions.ProtocolError):
                pass
            sock.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], listener


def replace(path, text):
    """Writes `path` as SECURITY.md asks: a new file renamed into place."""
    with open(path + ".new", "w") as f:
        f.write(text)
    os.replace(path + ".new", path)


def read(path):
    with open(path) as f:
        return f.read()


last_query = [""]  # what samples_since saw last, for failure messages


def samples_since(daemon, tls, host, seconds):
    """How many node_load1 samples of `host` sheafd stored over the last `seconds` (0 when none or on error)."""
    r = ctl(daemon, tls, "query", 'sum(count_over_time(node_load1{host="%s"}[%ds]))' % (host, seconds), "--format", "csv")
    last_query[0] = (r.stdout + r.stderr).strip()[-300:]
    if r.returncode != 0:
        return 0
    lines = r.stdout.strip().splitlines()[1:]  # after "series,timestamp_ms,value"
    try:
        return float(lines[-1].rsplit(",", 1)[1])
    except (IndexError, ValueError):
        return 0


def rotation_phase(tmp, pki, ca, client, cert_file, key_file, install):
    """A long-running sheaf-agent with mTLS and a token through (a) a token
    swap with the old token revoked and (b) a CA and client certificate
    rotation on both sides with the old ones refused."""
    started = time.time()
    pki.ca("new-ca")
    pki.cert("server-c", "new-ca", 0x1003, server=True)
    pki.cert("agent-a", "ca", 0x2002, server=False)
    pki.cert("agent-b", "new-ca", 0x2003, server=False)
    new_ca = pki.path("new-ca", "pem")
    rot = os.path.join(tmp, "rotation")
    os.makedirs(rot)
    # sheafd's files
    tokens = os.path.join(rot, "tokens.yaml")
    client_ca = os.path.join(rot, "client-ca.pem")
    replace(client_ca, read(ca))
    query_entry = "- {token: query-token, tenant: fleet, roles: [query]}\n"
    replace(tokens, "- {token: agent-token-1, tenant: fleet, roles: [ingest]}\n" + query_entry)
    install("server-a")
    # the agent's files
    agent_ca = os.path.join(rot, "agent-ca.pem")
    agent_cert, agent_key = os.path.join(rot, "agent.crt"), os.path.join(rot, "agent.key")
    agent_token = os.path.join(rot, "agent.token")
    replace(agent_ca, read(ca))
    replace(agent_key, read(pki.path("agent-a", "key")))
    replace(agent_cert, read(pki.path("agent-a", "pem")))
    replace(agent_token, "agent-token-1\n")

    args = ["--tls-cert", cert_file, "--tls-key", key_file, "--tls-client-ca", client_ca, "--auth-tokens", tokens]
    d = Sheafd(tmp, "rotation-1", args)
    d2 = None
    agent = None
    agent_log_path = os.path.join(rot, "agent.log")
    agent_log = open(agent_log_path, "w")
    host = "rotating-agent"
    try:
        agent = subprocess.Popen([SHEAF_AGENT, "--daemon", d.addr, "--state-dir", os.path.join(rot, "agent"),
                                  "--agent-id", host, "--label", "host=" + host, "--interval", "250ms",
                                  "--stream-max-age", "1s", "--health-interval", "1s", "--backoff-max", "500ms",
                                  "--tls-refresh-interval", "1s", "--tls-ca", agent_ca, "--tls-cert", agent_cert,
                                  "--tls-key", agent_key, "--token-file", agent_token],
                                 stdout=agent_log, stderr=agent_log)
        query = ["--tls-ca", ca, "--tls-cert", client[0], "--tls-key", client[1], "--token-file",
                 os.path.join(rot, "query.token")]
        replace(query[-1], "query-token\n")
        check(wait_for(lambda: samples_since(d, query, host, 2) > 0, 15),
              "rotation: the long-running agent delivers with mTLS and token 1 (%r)" % last_query[0])

        # (a) The token: sheafd accepts both, the agent's file changes, then
        # sheafd drops the old one.
        def reloaded_tokens(n):
            return lambda: d.log_text().count("auth tokens:") >= n
        base = d.log_text().count("auth tokens:")
        replace(tokens, "- {token: agent-token-1, tenant: fleet, roles: [ingest]}\n"
                "- {token: agent-token-2, tenant: fleet, roles: [ingest]}\n" + query_entry)
        d.proc.send_signal(signal.SIGHUP)
        check(wait_for(reloaded_tokens(base + 1), 5), "rotation: sheafd reloaded the tokens (both)")
        replace(agent_token, "agent-token-2\n")
        # Within a second (the agent's once-a-second look at the file).
        check(wait_for(lambda: "a new token" in read(agent_log_path), 5),
              "rotation (a): the agent logs that it read a new token")
        replace(tokens, "- {token: agent-token-2, tenant: fleet, roles: [ingest]}\n" + query_entry)
        d.proc.send_signal(signal.SIGHUP)
        check(wait_for(reloaded_tokens(base + 2), 5), "rotation: sheafd reloaded the tokens (token 1 revoked)")
        revoked = time.time()
        replace(agent_token + ".old", "agent-token-1\n")
        # Streams opened before the revocation keep their identity for at
        # most --stream-max-age (1 s): samples from the last 2 s, 3 s after
        # it, came through streams opened with token 2.
        check(wait_for(lambda: time.time() > revoked + 3 and samples_since(d, query, host, 2) > 0, 10),
              "rotation (a): after its token file changed and the old token was revoked, the agent's samples "
              "keep arriving (%.1f s after the revocation; %r)" % (time.time() - revoked, last_query[0]))
        r = ctl(d, query[:-1] + [agent_token + ".old"], "import", "-",
                stdin='revoked_probe{n="1"} 1 %d\n' % int(time.time() * 1000))
        check(r.returncode != 0 and "UNAUTHENTICATED" in r.stderr,
              "rotation (a): the old token is refused: %r" % r.stderr.strip()[-200:])

        # (b) The CAs and the agent's certificate. The agent trusts both CAs
        # for the change and gets a certificate from the new one; sheafd
        # serves a certificate from the new CA and accepts clients of the new
        # CA only.
        replace(agent_ca, read(ca) + read(new_ca))
        replace(agent_key, read(pki.path("agent-b", "key")))
        replace(agent_cert, read(pki.path("agent-b", "pem")))
        install("server-c")
        replace(client_ca, read(new_ca))
        d.proc.send_signal(signal.SIGHUP)
        check(wait_for(lambda: "serial 1003" in d.log_text(), 5), "rotation: sheafd reloaded its certificate")
        old_client = ["--tls-ca", new_ca, "--tls-cert", pki.path("agent-a", "pem"), "--tls-key",
                      pki.path("agent-a", "key"), "--token-file", query[-1]]
        new_client = ["--tls-ca", new_ca, "--tls-cert", pki.path("agent-b", "pem"), "--tls-key",
                      pki.path("agent-b", "key"), "--token-file", query[-1]]
        check(wait_for(lambda: ctl(d, new_client, "health").returncode == 0, 5),
              "rotation (b): a client certificate from the new CA is accepted")
        r = ctl(d, old_client, "health")
        check(r.returncode != 0 and "UNAVAILABLE" in r.stderr,
              "rotation (b): the agent's old certificate is refused now: %r" % r.stderr.strip()[-200:])
        # A new handshake: sheafd restarts on the same port. (Until the
        # agent's watcher has re-read its files, within its 1 s refresh, its
        # handshakes fail and it retries.)
        port = d.grpc_port
        d.stop()
        d2 = Sheafd(tmp, "rotation-2", args, grpc_listen="127.0.0.1:%d" % port)
        restarted = time.time()
        check(wait_for(lambda: samples_since(d2, new_client, host, 2) > 0, 15),
              "rotation (b): after the CAs and its certificate changed and sheafd restarted, the agent's samples "
              "arrive again (%.1f s after the restart): it verified sheafd's new certificate and presented its "
              "new one (%r)" % (time.time() - restarted, last_query[0]))
        check(agent.poll() is None, "rotation: the agent ran throughout (not restarted)")
        print("rotation phase took %.1f s" % (time.time() - started))
    finally:
        fault_support.kill(agent)  # its work is checked; nothing to flush
        agent_log.close()
        for daemon in (d, d2):
            if daemon and daemon.proc.poll() is None:
                daemon.stop()
        if any_failed():
            print(d.log_text()[-3000:])
            if d2:
                print(d2.log_text()[-3000:])
            print(read(agent_log_path)[-3000:])


def main():
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        pki = Pki(tmp)
        pki.ca("ca")
        pki.ca("other-ca")
        pki.cert("server-a", "ca", 0x1001, server=True)
        pki.cert("server-b", "ca", 0x1002, server=True)
        pki.cert("client", "ca", 0x2001, server=False)
        pki.cert("intruder", "other-ca", 0x3001, server=False)
        ca, other_ca = pki.path("ca", "pem"), pki.path("other-ca", "pem")
        client = (pki.path("client", "pem"), pki.path("client", "key"))
        intruder = (pki.path("intruder", "pem"), pki.path("intruder", "key"))
        # The files sheafd reads; rotation overwrites them.
        cert_file, key_file = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")

        def install(name, key_name=None):
            for src, dst in ((pki.path(name, "pem"), cert_file), (pki.path(key_name or name, "key"), key_file)):
                with open(src) as f, open(dst + ".new", "w") as g:
                    g.write(f.read())
                os.replace(dst + ".new", dst)

        install("server-a")
        print("certificates made in %.1f s" % (time.time() - started))

        # --- TLS, then rotation -------------------------------------------------
        d = Sheafd(tmp, "tls", ["--tls-cert", cert_file, "--tls-key", key_file])
        tail = None
        try:
            tls = ["--tls-ca", ca]
            now_ms = int(time.time() * 1000)
            r = ctl(d, tls, "import", "-", stdin='tls_probe{n="1"} 42 %d\n' % (now_ms - 1000))
            check(r.returncode == 0, "sheafctl import (Push) over TLS: %s" % r.stderr.strip()[-200:])
            r = ctl(d, tls, "query", "tls_probe", "--format", "csv")
            check(r.returncode == 0 and ",42" in r.stdout, "sheafctl query over TLS sees the sample: %r %r"
                  % (r.stdout[-200:], r.stderr[-200:]))
            r = run([SHEAF_LOADGEN, "--addr", d.addr, "--hosts", "1", "--series-per-host", "2", "--points", "3",
                     "--streams", "1", "--agent-prefix", "tls-loadgen"] + tls)
            check(r.returncode == 0, "sheaf-loadgen over TLS: %s" % (r.stdout + r.stderr).strip()[-300:])

            r = ctl(d, ["--tls-ca", other_ca], "health")
            check(r.returncode != 0 and "UNAVAILABLE" in r.stderr and "certif" in r.stderr.lower(),
                  "a client trusting another CA: UNAVAILABLE, about the certificate: %r" % r.stderr.strip())
            r = ctl(d, tls + ["--tls-server-name", "localhost"], "health")
            check(r.returncode == 0, "--tls-server-name localhost (a SAN) to 127.0.0.1 works: %r" % r.stderr[-200:])
            r = ctl(d, tls + ["--tls-server-name", "sheafd.invalid"], "health")
            check(r.returncode != 0 and "UNAVAILABLE" in r.stderr, "--tls-server-name of a name the certificate "
                  "lacks is refused: %r" % r.stderr.strip()[-200:])
            r = ctl(d, [], "health")
            check(r.returncode != 0 and "UNAVAILABLE" in r.stderr, "a plaintext client is refused: %r"
                  % r.stderr.strip())
            status, body = https_get(d.http_port, ca)
            check(status == 200 and b"sheaf_build_info" in body, "HTTPS /metrics with the CA: %d" % status)
            failed, why = https_fails(d.http_port, other_ca)
            check(failed and "CERTIFICATE_VERIFY_FAILED" in why, "HTTPS trusting another CA fails: " + why)

            check(peer_serial(d.grpc_port, ca, alpn="h2") == 0x1001 and peer_serial(d.http_port, ca) == 0x1001,
                  "both ports serve certificate 0x1001")
            # Connections opened before the rotation: a kept-alive HTTPS one and
            # a gRPC tail stream.
            kept = http.client.HTTPSConnection("127.0.0.1", d.http_port, context=tls_context(ca), timeout=5)
            kept.request("GET", "/metrics")
            kept.getresponse().read()
            tail = subprocess.Popen([SHEAFCTL, "--addr", d.addr, "--format", "csv"] + tls + ["tail", "tail_probe"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)  # the subscription is made (a sample pushed before it would not show)

            install("server-b")
            d.proc.send_signal(signal.SIGHUP)
            rotated_at = time.time()
            check(wait_for(lambda: peer_serial(d.http_port, ca) == 0x1002, 5),
                  "HTTPS: a new connection after SIGHUP gets certificate 0x1002")
            check(wait_for(lambda: peer_serial(d.grpc_port, ca, alpn="h2") == 0x1002, 5),
                  "gRPC: a new connection after SIGHUP gets certificate 0x1002 (after %.2f s)"
                  % (time.time() - rotated_at))
            kept.request("GET", "/metrics")
            resp = kept.getresponse()
            resp.read()
            check(resp.status == 200 and int(kept.sock.getpeercert()["serialNumber"], 16) == 0x1001,
                  "the HTTPS connection opened before still works (with certificate 0x1001)")
            r = ctl(d, tls, "import", "-", stdin='tail_probe{n="1"} 7 %d\n' % int(time.time() * 1000))
            check(r.returncode == 0, "sheafctl import after the rotation: %s" % r.stderr.strip()[-200:])
            line = [None]
            reader = threading.Thread(target=lambda: line.__setitem__(0, tail.stdout.readline()), daemon=True)
            reader.start()
            reader.join(10)
            check(line[0] is not None and "tail_probe" in line[0] and ",7" in line[0],
                  "the gRPC tail stream opened before the rotation goes on (got %r)" % line[0])

            # A bad pair: the key of certificate A with certificate B.
            install("server-b", key_name="server-a")
            d.proc.send_signal(signal.SIGHUP)
            check(wait_for(lambda: "does not match" in d.log_text(), 5),
                  "a mismatched pair at SIGHUP is logged")
            bad_line = [l for l in d.log_text().splitlines() if "does not match" in l]
            check(bool(bad_line) and key_file in bad_line[0] and "still serving" in bad_line[0],
                  "the log names the key file and says what is still served: %r" % bad_line[:1])
            time.sleep(1.5)  # longer than the gRPC provider's refresh: a bad pair would show by now
            check(peer_serial(d.grpc_port, ca, alpn="h2") == 0x1002 and peer_serial(d.http_port, ca) == 0x1002,
                  "after the bad pair both ports still serve certificate 0x1002")
            os.remove(key_file)
            d.proc.send_signal(signal.SIGHUP)
            check(wait_for(lambda: "cannot read" in d.log_text(), 5), "a missing key file at SIGHUP is logged")
            r = ctl(d, tls, "health")
            check(r.returncode == 0 and d.proc.poll() is None, "sheafd still serves TLS after the bad reloads")
        finally:
            if tail:
                tail.terminate()
                tail.wait()
            d.stop()
            if any_failed():
                print(d.log_text()[-3000:])

        # --- Mutual TLS -----------------------------------------------------------
        install("server-a")
        m = Sheafd(tmp, "mtls", ["--tls-cert", cert_file, "--tls-key", key_file, "--tls-client-ca", ca])
        try:
            mtls = ["--tls-ca", ca, "--tls-cert", client[0], "--tls-key", client[1]]
            r = ctl(m, mtls, "import", "-", stdin='mtls_probe{n="1"} 5 %d\n' % (int(time.time() * 1000) - 1000))
            check(r.returncode == 0, "mTLS: sheafctl import with a client certificate: %s" % r.stderr.strip()[-200:])
            r = ctl(m, mtls, "query", "mtls_probe", "--format", "csv")
            check(r.returncode == 0 and ",5" in r.stdout, "mTLS: sheafctl query with a client certificate")
            r = ctl(m, ["--tls-ca", ca], "health")
            check(r.returncode != 0 and "UNAVAILABLE" in r.stderr, "mTLS: gRPC without a client certificate is "
                  "refused: %r" % r.stderr.strip())
            r = ctl(m, ["--tls-ca", ca, "--tls-cert", intruder[0], "--tls-key", intruder[1]], "health")
            check(r.returncode != 0 and "UNAVAILABLE" in r.stderr, "mTLS: gRPC with a certificate from another CA "
                  "is refused: %r" % r.stderr.strip())
            status, _ = https_get(m.http_port, ca, client)
            check(status == 200, "mTLS: HTTPS with a client certificate: %d" % status)
            failed, why = https_fails(m.http_port, ca)
            check(failed, "mTLS: HTTPS without a client certificate is refused: " + why)
            failed, why = https_fails(m.http_port, ca, intruder)
            check(failed, "mTLS: HTTPS with a certificate from another CA is refused: " + why)
            # The agent, with its client certificate: its host metrics arrive.
            agent = run([SHEAF_AGENT, "--daemon", m.addr, "--state-dir", os.path.join(tmp, "agent"), "--count", "1",
                         "--agent-id", "tls-agent", "--label", "host=tls-agent", "--shutdown-timeout", "5s"] + mtls,
                        timeout=30)
            r = ctl(m, mtls, "series", '{host="tls-agent"}')
            check(agent.returncode == 0 and r.returncode == 0 and "tls-agent" in r.stdout,
                  "mTLS: sheaf-agent with a client certificate delivers its series (%d series lines; agent: %s)"
                  % (len(r.stdout.splitlines()), agent.stderr.strip()[-300:]))
        finally:
            m.stop()
            if any_failed():
                print(m.log_text()[-3000:])

        # --- Rotation under a running agent: its token, then CAs and certificate ---
        rotation_phase(tmp, pki, ca, client, cert_file, key_file, install)

        # --- The token, on plaintext loopback --------------------------------------
        token_file = os.path.join(tmp, "token")
        with open(token_file, "w") as f:
            f.write("  s3cret-token\n")
        seen = []
        port, listener = token_server(seen)
        r = run([SHEAFCTL, "--addr", "127.0.0.1:%d" % port, "--timeout", "5s", "--token-file", token_file, "stats"])
        listener.close()
        auth = [h.get("authorization") for h in seen]
        check(auth[:1] == ["Bearer s3cret-token"] and r.returncode != 0 and "UNIMPLEMENTED" in r.stderr,
              "--token-file: the call carries authorization: Bearer <token>, trimmed (%r)" % auth)

        # --- Plaintext on a non-loopback address -----------------------------------
        r = run([SHEAFD, "--grpc-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0", "--data-dir",
                 os.path.join(tmp, "refused")], timeout=20)
        check(r.returncode != 0 and "--insecure" in r.stderr and "--grpc-listen" in r.stderr,
              "0.0.0.0 without TLS or --insecure exits non-zero naming --insecure: %r" % r.stderr.strip()[-300:])
        r = run([SHEAFD, "--grpc-listen", "127.0.0.1:0", "--http-listen", "0", "--data-dir",
                 os.path.join(tmp, "refused")], timeout=20)
        check(r.returncode != 0 and "--http-listen" in r.stderr, "a bare HTTP port without TLS is refused too")
        w = Sheafd(tmp, "insecure-any", ["--insecure"], grpc_listen="0.0.0.0:0")
        w.stop()
        check(re.search(r"--grpc-listen 0\.0\.0\.0:0: plaintext", w.log_text()) is not None,
              "with --insecure, 0.0.0.0 starts and logs a warning")

    print("took %.1f s" % (time.time() - started))
    sys.exit(fault_support.summary())


if __name__ == "__main__":
    main()
