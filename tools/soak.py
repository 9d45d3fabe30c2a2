#!/usr/bin/python3
"""Soak: sheafd under steady mixed work for SOAK_SECONDS, with a verdict.

    SOAK_SECONDS=3600 tools/soak.py [BUILD_DIR]     # default BUILD_DIR: build

Binaries come from $SHEAFD, $SHEAF_AGENT, $SHEAFCTL, $SHEAF_LOADGEN (as
meson sets them for the e2e suite) or else from BUILD_DIR. For the whole
time, at once:

- ingest: a sheaf-agent scrapes a target of the script's every second
  (tests/e2e/fault_support.Target: SOAK_SERIES series whose samples the
  script knows exactly), and sheaf-loadgen pushes a 100-series fleet over
  and over as the same two agents (their sequences grow with the clock),
  each run 30 points later in time than the one before (backfill 6 days
  back, so roll-ups and the cutting of old blocks run too);
- queries: every 0.5 s an HTTP instant query, an HTTP range query and a
  gRPC query (sheafctl);
- a live tail (sheafctl tail) of the target's series;
- a recording rule over the target's series, every second.

It fails if sheafd's resident memory grows by more than
SOAK_RSS_GROWTH_MIB (default 64) after the warm-up (the first third of
the run, at most 5 minutes; sheafd runs with its heads cut every minute
and 16 MiB of memtables, so its bounded buffers are full by then), if any request or load run fails, if the tail
stops receiving or the rule stops recording, or if, at the end, a sample
acknowledged is missing: each target series must hold exactly the samples
served, and the fleet exactly what every loadgen run had acknowledged.
Prints a line a minute and 'N passed, N failed'.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from fault_support import (Agent, Sheafd, Target, check, close_all, drain_and_compare, kill,  # noqa: E402
                           rss_kib, summary, tail)

SECONDS = float(os.environ.get("SOAK_SECONDS", "300"))
RSS_GROWTH_MIB = int(os.environ.get("SOAK_RSS_GROWTH_MIB", "64"))
SERIES = int(os.environ.get("SOAK_SERIES", "200"))
METRIC = "soak_value"
FLEET_HOSTS, FLEET_PER_HOST, FLEET_POINTS = 10, 10, 30
RULES = """groups:
  - name: soak
    interval: 1s
    rules:
      - record: soak:value:sum
        expr: sum(%s)
""" % METRIC


def binaries():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
    for env, rel in (("SHEAFD", "daemon/sheafd"), ("SHEAF_AGENT", "agent/sheaf-agent"),
                     ("SHEAFCTL", "tools/sheafctl"), ("SHEAF_LOADGEN", "tools/sheaf-loadgen")):
        os.environ.setdefault(env, os.path.join(build, rel))
        if not os.access(os.environ[env], os.X_OK):
            sys.exit("soak: %s (%s) is not an executable; build first or set $%s" % (rel, os.environ[env], env))


class Errors:
    """Unexpected failures by kind, with the first example of each."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts, self.examples = {}, {}

    def add(self, kind, detail):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.examples.setdefault(kind, str(detail)[-500:])

    def __bool__(self):
        with self.lock:
            return bool(self.counts)

    def __str__(self):
        with self.lock:
            return "; ".join("%s: %d (first: %s)" % (k, n, self.examples[k]) for k, n in self.counts.items())


def run(args, timeout=60):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, text=True)
    return p.returncode, p.stdout


def main():
    binaries()
    started = time.time()
    deadline = started + SECONDS
    warmup_end = started + min(SECONDS / 3, 300)
    errors = Errors()
    stop = threading.Event()
    target = Target(METRIC, SERIES)
    with tempfile.TemporaryDirectory() as tmp:
        rules = os.path.join(tmp, "soak.yml")
        with open(rules, "w") as f:
            f.write(RULES)
        # Heads cut every minute and 16 MiB of memtables (defaults: 10
        # minutes, 64 MiB): sheafd's bounded buffers fill within the
        # warm-up, so growth after it is growth beyond its bounds.
        daemon = Sheafd(tmp, os.path.join(tmp, "data"),
                        ["--rule-files", rules, "--grace-period", "5s", "--head-flush-interval", "1m",
                         "--write-buffer-bytes", str(16 << 20)])
        agent, tailer = None, None
        threads = []
        try:
            if not check("sheafd starts", daemon.start()):
                return summary()
            agent = Agent(tmp, daemon.addr, target, interval="1s")
            tail_path = os.path.join(tmp, "tail.txt")
            tail_out = open(tail_path, "w")
            tailer = subprocess.Popen([os.environ["SHEAFCTL"], "--addr", daemon.addr, "tail", METRIC],
                                      stdout=tail_out, stderr=subprocess.STDOUT)
            fleet = {"acked": 0, "runs": 0}
            interval_ms = 1000
            base_ms = (int(time.time() * 1000) - 6 * 86400 * 1000) // interval_ms * interval_ms

            def load():
                while not stop.is_set():
                    start_ms = base_ms + fleet["runs"] * FLEET_POINTS * interval_ms
                    rc, out = run([os.environ["SHEAF_LOADGEN"], "--addr", daemon.addr, "--hosts", str(FLEET_HOSTS),
                                   "--series-per-host", str(FLEET_PER_HOST), "--points", str(FLEET_POINTS),
                                   "--interval", "1s", "--start-ms", str(start_ms), "--streams", "2",
                                   "--agent-prefix", "soak"])
                    fleet["runs"] += 1
                    m = re.search(r"samples_acked (\d+)", out)
                    if rc != 0 or not m:
                        errors.add("loadgen", out)
                    else:
                        fleet["acked"] += int(m.group(1))
                    stop.wait(0.5)

            def query():
                while not stop.is_set():
                    now = time.time()
                    try:
                        daemon.query("sum(rate(%s[1m]))" % METRIC)
                        daemon.get("/api/v1/query_range?query=sum(%s)&start=%d&end=%d&step=15" %
                                   (METRIC, now - 300, now))
                    except (OSError, RuntimeError) as e:
                        errors.add("http query", e)
                    rc, out = run([os.environ["SHEAFCTL"], "--addr", daemon.addr, "query", "count(%s)" % METRIC])
                    if rc != 0:
                        errors.add("grpc query", out)
                    stop.wait(0.5)

            threads = [threading.Thread(target=load), threading.Thread(target=query)]
            for t in threads:
                t.start()
            baseline, peak, last_print, tail_at_warmup = None, 0, started, 0
            while time.time() < deadline and daemon.alive():
                time.sleep(1)
                rss = rss_kib(daemon.proc.pid) or 0
                if time.time() >= warmup_end:
                    if baseline is None:
                        baseline = rss
                        tail_at_warmup = os.path.getsize(tail_path)
                    peak = max(peak, rss)
                if time.time() - last_print >= 60:
                    last_print = time.time()
                    print("%4.0f s: sheafd RSS %d MiB, %d scrapes served, %d loadgen runs (%d samples acked), "
                          "tail %d KiB, errors: %s" % (time.time() - started, rss >> 10, len(target.served),
                                                        fleet["runs"], fleet["acked"], os.path.getsize(tail_path) >> 10,
                                                        errors or "none"), flush=True)
            stop.set()
            for t in threads:
                t.join()
            check("sheafd ran the whole time", daemon.alive(), "exit %s" % daemon.proc.poll())
            check("no request or load run failed", not errors.counts, str(errors))
            growth = (peak - baseline) >> 10 if baseline else 0
            check("RSS grew %d MiB after the warm-up (%d -> peak %d MiB), within %d MiB" %
                  (growth, (baseline or 0) >> 10, peak >> 10, RSS_GROWTH_MIB), baseline and growth <= RSS_GROWTH_MIB)
            check("the live tail kept receiving", tailer.poll() is None and os.path.getsize(tail_path) > tail_at_warmup,
                  tail(tail_path, 500))
            rule_samples = daemon.query("count_over_time(soak:value:sum[%ds])" % int(SECONDS))
            got = int(float(rule_samples[0]["value"][1])) if rule_samples else 0
            check("the recording rule recorded (%d evaluations stored, ~1 a second)" % got, got >= SECONDS * 0.5)
            drain_and_compare(agent, target, daemon)
            # count_over_time drops the name: one query per metric name.
            names = json.loads(daemon.get('/api/v1/label/__name__/values?match[]={job="node"}'))["data"]
            stored = 0
            for name in names:
                counts = daemon.query('sum(count_over_time(%s{job="node"}[7d]))' % name)
                stored += int(float(counts[0]["value"][1])) if counts else 0
            check("the fleet holds exactly what loadgen's %d runs had acknowledged (%d samples)" %
                  (fleet["runs"], fleet["acked"]), stored == fleet["acked"], "stored %d" % stored)
            check("SIGTERM exits 0", daemon.stop() == 0)
            print("soak of %.0f s done" % (time.time() - started))
        finally:
            stop.set()
            for t in threads:
                t.join()
            kill(tailer)
            close_all(daemon, agent, target)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
