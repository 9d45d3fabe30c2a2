"""What the fault tests (crash_loop, disk_full, overload) and tools/soak.py
share: checks and their tally, bounded waits, a sheafd on a chosen port and
data directory that can be killed and started again, a sheaf-agent whose
/metrics the test reads, and a scrape target that knows exactly which
samples it served, so what sheafd stores can be compared with it sample by
sample.

The target answers every scrape with SERIES series named METRIC, each
with the scrape's number as value and the moment it was served (ms) as
the exposed timestamp. A scrape counts as served once its whole answer is
written; the agent keeps exposed timestamps, so every series must end up
in sheafd with exactly {timestamp: number} of the scrapes served.
"""
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print("%s: %s%s" % ("ok" if ok else "FAIL", name, (" -- " + detail) if detail and not ok else ""), flush=True)
    return ok


def summary():
    """Prints the tally; the exit code."""
    passed = sum(1 for r in results if r)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if results and all(results) else 1


def show_logs_if_failed(*paths):
    """The tails of these logs, when a check failed (before the temporary
    directory holding them goes)."""
    if results and all(results):
        return
    for path in paths:
        if path:
            sys.stdout.write("---- %s (tail)\n%s\n" % (os.path.basename(path), tail(path, 6000)))


def kill(proc):
    """SIGKILLs a child still running and reaps it."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def wait_for(cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    """VmRSS of a process, KiB; None once it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
            return int(m.group(1)) if m else None
    except OSError:
        return None


def tail(path, n=4000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


class Target:
    """The scrape target: serves numbered scrapes, records them, can pause."""

    def __init__(self, metric, series):
        self.metric, self.series = metric, series
        self.lock = threading.Lock()
        self.served = {}  # scrape number -> timestamp ms
        self.serving = True
        self.last_ts = 0
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with target.lock:
                    if not target.serving:
                        self.send_error(503)
                        return
                    n = len(target.served) + 1
                    ts = max(int(time.time() * 1000), target.last_ts + 1)
                    target.last_ts = ts
                    body = "".join('%s{s="%d"} %d %d\n' % (target.metric, k, n, ts)
                                   for k in range(target.series)).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()
                    target.served[n] = ts

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def pause(self, paused=True):
        """Stops (or resumes) serving; what was served so far."""
        with self.lock:
            self.serving = not paused
            return dict(self.served)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Sheafd:
    """sheafd on a fixed gRPC port and data directory, started again and
    again; its output appended to TMP/sheafd.log."""

    def __init__(self, tmp, data, args=(), port=None):
        self.tmp, self.data, self.args = tmp, data, list(args)
        self.port = port or free_port()
        self.proc, self.http_port, self.starts = None, None, 0
        self.log_path = os.path.join(tmp, "sheafd.log")
        self.log = open(self.log_path, "a")

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        """True once it serves (its ready file written)."""
        self.starts += 1
        ready = os.path.join(self.tmp, "sheafd.ready")
        if os.path.exists(ready):
            os.remove(ready)
        self.log.write("==== start %d\n" % self.starts)
        self.log.flush()
        self.proc = subprocess.Popen([os.environ["SHEAFD"], "--grpc-listen", self.addr, "--http-listen",
                                      "127.0.0.1:0", "--data-dir", self.data, "--ready-file", ready] + self.args,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        up = wait_for(lambda: (os.path.exists(ready) and os.path.getsize(ready) > 0) or self.proc.poll() is not None,
                      30)
        if not up or self.proc.poll() is not None:
            return False
        self.http_port = int(re.search(r"http_port=(\d+)", open(ready).read()).group(1))
        return True

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def stop(self):
        """SIGTERM; the exit code."""
        self.proc.terminate()
        return self.proc.wait(timeout=60)

    def get(self, path, timeout=30):
        """The body of a 200; RuntimeError with the code and body otherwise."""
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.http_port, path), timeout=timeout) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError("GET %s: %d %s" % (path, e.code, e.read().decode(errors="replace")[:500]))

    def query(self, expr):
        """An HTTP API instant query's result list; raises on errors."""
        answer = json.loads(self.get("/api/v1/query?query=" + urllib.parse.quote(expr)))
        if answer.get("status") != "success":
            raise RuntimeError(str(answer)[:500])
        return answer["data"]["result"]

    def samples(self, metric, by="s", window="2h"):
        """{label `by` value: {timestamp ms: value string}} of `metric`."""
        out = {}
        for s in self.query("%s[%s]" % (metric, window)):
            out[s["metric"].get(by, "")] = {int(round(float(t) * 1000)): v for t, v in s["values"]}
        return out

    def close(self):
        self.kill()
        self.log.close()


def compare(stored, target):
    """What differs between sheafd's samples of the target's series and
    the scrapes it served (a list of lines, empty when nothing does)."""
    expected = {ts: str(n) for n, ts in target.served.items()}
    bad = []
    for k in range(target.series):
        got = stored.get(str(k), {})
        if got == expected:
            continue
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        changed = [t for t in expected if t in got and got[t] != expected[t]]
        bad.append('s="%d": %d missing %s, %d extra %s, %d changed' %
                   (k, len(missing), missing[:3], len(extra), extra[:3], len(changed)))
    if len(stored) != target.series:
        bad.append("%d series stored, %d expected" % (len(stored), target.series))
    return bad


HOST_COLLECTORS = ("cpu", "stat", "meminfo", "vmstat", "loadavg", "pressure", "diskstats", "netdev", "filesystem",
                   "filefd", "process")


class Agent:
    """A sheaf-agent scraping `target` every `interval`, delivering to
    `daemon_addr` quickly after outages, with its own /metrics."""

    def __init__(self, tmp, daemon_addr, target, interval="500ms", extra=()):
        self.metrics_port = free_port()
        self.interval_s = float(interval[:-2]) / 1000 if interval.endswith("ms") else float(interval[:-1])
        config = os.path.join(tmp, "agent.yaml")
        with open(config, "w") as f:
            f.write("scrape:\n  - url: http://127.0.0.1:%d/metrics\n    job: faults\n" % target.port)
        argv = [os.environ["SHEAF_AGENT"], "--config", config, "--daemon", daemon_addr, "--state-dir",
                os.path.join(tmp, "agent-state"), "--interval", interval, "--metrics-listen",
                "127.0.0.1:%d" % self.metrics_port, "--stream-max-age", "1s", "--replay-jitter", "0s",
                "--replay-rate", "1000", "--backoff-max", "300ms", "--health-interval", "200ms"] + list(extra)
        for c in HOST_COLLECTORS:
            argv += ["--disable-collector", c]
        self.log_path = os.path.join(tmp, "agent.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)

    def metric(self, name):
        """The sum of `name`'s series in the agent's /metrics (0 if it has
        none); None if /metrics cannot be read."""
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def drained(self):
        return self.metric("sheaf_agent_spool_batches_unacked") == 0

    def stop(self):
        """SIGTERM; the exit code."""
        self.proc.terminate()
        return self.proc.wait(timeout=30)

    def close(self):
        kill(self.proc)
        self.log.close()


def drain_and_compare(agent, target, daemon):
    """Stops the target, lets the agent drain its spool into `daemon` and
    stop, and checks that every series holds exactly the scrapes served."""
    target.pause()
    # A scrape in flight when the target paused ends within its timeout
    # (at most the interval) and is spooled; then the spool must empty.
    time.sleep(2 * agent.interval_s)
    check("the agent's spool drains", wait_for(agent.drained, 30))
    dropped = agent.metric("sheaf_agent_batches_dropped_total")
    check("the agent dropped nothing", dropped == 0, "dropped %s" % dropped)
    check("the agent stops cleanly (SIGTERM, exit 0)", agent.stop() == 0)
    check("with nothing left in its spool", " 0 batches waiting, " in tail(agent.log_path, 100000),
          tail(agent.log_path, 1000))
    bad = compare(daemon.samples(target.metric), target)
    check("each of the %d series holds exactly the samples of the %d scrapes served (%d in all)" %
          (target.series, len(target.served), target.series * len(target.served)), not bad, "; ".join(bad[:5]))


def close_all(daemon, agent, target):
    """Ends what a fault script started (`agent` may be None) and shows
    the logs if a check failed."""
    if agent is not None:
        agent.close()
    daemon.close()
    target.close()
    show_logs_if_failed(agent and agent.log_path, daemon.log_path)
