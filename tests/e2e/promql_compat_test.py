#!/usr/bin/python3
"""sheaf's PromQL against a real Prometheus on the same data.

Generates two hours of OpenMetrics data with what trips engines up:
counter resets, series that start and stop inside the range, a gap longer
than the 5m lookback, timestamps that are not aligned to the step (every
series has its own offset and jitter), negative and fractional gauges, a
histogram, and an info metric for joins. The same file goes into Debian's
Prometheus (promtool tsdb create-blocks-from openmetrics, then a
prometheus started on loopback) and into sheafd (sheafctl import). Every
query runs as a range query (two steps, one not dividing the data's
interval) and as instant queries at an unaligned time, and the answers must
be equal: the same result type, label sets and timestamps, values within
1e-9 relative, NaN and Inf alike. Error cases must fail on both.

Prints 'N passed, N failed'; exit 1 on any failure.
"""
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

SHEAFD = os.environ["SHEAFD"]
SHEAFCTL = os.environ["SHEAFCTL"]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

# Deliberate differences, by query: none so far. A query listed here is
# still run; its difference is printed but not counted as a failure.
DELIBERATE = {}

QUERIES = [
    # selectors, offset, @
    'http_requests_total',
    'http_requests_total{method="GET",job=~"api|web"}',
    'http_requests_total{job!="api",instance!~"i1|i2"}',
    'node_load1',
    'node_load1 offset 7m',
    'node_load1 @ {mid}',
    'node_load1 offset -3m',
    'temperature_celsius{room=~"lab.*"}',
    # range functions
    'rate(http_requests_total[5m])',
    'rate(http_requests_total[1m])',
    'irate(http_requests_total[3m])',
    'increase(http_requests_total[10m])',
    'delta(temperature_celsius[10m])',
    'idelta(temperature_celsius[5m])',
    'deriv(node_load1[10m])',
    'predict_linear(node_load1[15m], 600)',
    'resets(http_requests_total[30m])',
    'changes(node_load1[20m])',
    'avg_over_time(temperature_celsius[10m])',
    'min_over_time(temperature_celsius[7m])',
    'max_over_time(node_load1[13m])',
    'sum_over_time(node_load1[5m])',
    'count_over_time(node_load1[5m])',
    'last_over_time(node_load1[10m])',
    'present_over_time(node_load1[2m])',
    'absent_over_time(node_load1{instance="i7"}[2m])',
    'absent_over_time(nonexistent{job="x"}[5m])',
    'quantile_over_time(0.9, temperature_celsius[15m])',
    'stddev_over_time(temperature_celsius[10m])',
    'stdvar_over_time(node_load1[10m])',
    'holt_winters(node_load1[10m], 0.5, 0.3)',
    'rate(http_requests_total[5m] offset 10m)',
    'rate(http_requests_total[5m] @ {mid})',
    # histograms
    'histogram_quantile(0.9, rate(request_latency_seconds_bucket[5m]))',
    'histogram_quantile(0.5, sum by (le) (rate(request_latency_seconds_bucket[10m])))',
    'histogram_quantile(0.99, sum by (job, le) (rate(request_latency_seconds_bucket[5m])))',
    'rate(request_latency_seconds_sum[5m]) / rate(request_latency_seconds_count[5m])',
    # instant-vector functions
    'abs(temperature_celsius)',
    'ceil(temperature_celsius)',
    'floor(temperature_celsius)',
    'round(temperature_celsius)',
    'round(temperature_celsius, 0.5)',
    'clamp(temperature_celsius, -2, 20)',
    'clamp_min(node_load1, 1)',
    'clamp_max(node_load1, 1)',
    'exp(node_load1 / 10)',
    'ln(node_load1) + log2(node_load1) - log10(node_load1)',
    'sqrt(node_load1)',
    'sgn(temperature_celsius)',
    'timestamp(node_load1)',
    'timestamp(rate(http_requests_total[5m]))',
    'label_replace(node_load1, "zone", "$1-z", "region", "(.*)-.*")',
    'label_join(node_load1, "id", ":", "region", "instance")',
    'vector(time() % 3600)',
    'scalar(sum(node_load1))',
    'time()',
    'minute(node_load1 * 0 + 1700000000) + hour() + day_of_week() + month() + year()',
    'days_in_month(vector(1709251200))',
    'absent(node_load1{instance="nope",region="x"})',
    'absent(node_load1)',
    'sort(node_load1)',
    'sort_desc(rate(http_requests_total[5m]))',
    # aggregations
    'sum(rate(http_requests_total[5m]))',
    'sum by (job) (rate(http_requests_total[5m]))',
    'sum without (instance, method) (rate(http_requests_total[5m]))',
    'avg by (region) (node_load1)',
    'min by (region) (node_load1)',
    'max without (instance) (node_load1)',
    'count by (job) (http_requests_total)',
    'group by (region) (node_load1)',
    'stddev by (job) (rate(http_requests_total[5m]))',
    'stdvar(temperature_celsius)',
    'topk(3, node_load1)',
    'bottomk by (region) (1, node_load1)',
    'quantile by (job) (0.75, rate(http_requests_total[5m]))',
    'count_values("load", round(node_load1))',
    'sum by (job) (count_values without (method) ("c", floor(http_requests_total / 1000)))',
    # binary operators
    'http_requests_total * 2 + 1',
    '2 ^ node_load1',
    'node_load1 % 0.7',
    'node_load1 > 1.5',
    'node_load1 > bool 1.5',
    '1.5 < node_load1',
    'node_load1 == bool node_load1',
    'node_load1 != 2',
    'node_load1 <= 1 or node_load1 >= 3',
    'node_load1 and on (region) node_load1{instance="i1"}',
    'node_load1 unless on (region) node_load1{instance="i1"}',
    'rate(http_requests_total[5m]) / on (job, instance) group_left sum by (job, instance) (rate(http_requests_total[5m]))',
    'sum by (instance) (rate(http_requests_total[5m])) * on (instance) group_left (version) info_metric',
    'info_metric * on (instance) group_right (version) sum by (instance, job) (rate(http_requests_total[5m]))',
    'node_load1 - ignoring (region) group_left node_load1{instance="i1"}',
    'node_load1 atan2 2',
    'http_requests_total atan2 on (job, instance, method) http_requests_total',
    '-node_load1',
    '1 + 2 * 3 - 4 / 2',
    '(1 > bool 2) + (3 >= bool 3)',
    # subqueries
    'max_over_time(rate(http_requests_total[2m])[10m:1m])',
    'avg_over_time(node_load1[15m:2m])',
    'rate(sum(http_requests_total)[10m:30s])',
    'max_over_time(deriv(node_load1[5m])[20m:])',
]

# Must fail on both (Prometheus: 400 or 422).
ERRORS = [
    'sum(rate(http_requests_total[5m])',
    'rate(node_load1)',
    'node_load1 + on (region) node_load1',
    'http_requests_total / on (job) sum by (job, method) (http_requests_total)',
    'label_replace(node_load1, "1bad", "", "region", "")',
    'holt_winters(node_load1[10m], 2, 0.5)',
]

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print("%s: %s%s" % ("ok" if ok else "FAIL", name, (" -- " + detail) if detail and not ok else ""), flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return True
        except Exception:
            pass
        time.sleep(0.2)
    return False


def generate(path, t0, t1):
    """OpenMetrics text; returns the number of samples."""
    rng = random.Random(42)
    lines = []
    n = 0

    def ts(t):
        return "%.3f" % (t / 1000.0)

    # Counters with resets; every series its own offset (not a multiple of
    # the step) and some jitter.
    lines.append("# TYPE http_requests counter")
    for job in ("api", "web", "batch"):
        for inst in ("i1", "i2", "i3"):
            for method in ("GET", "POST"):
                offset = rng.randint(0, 14999)
                value = rng.randint(0, 1000)
                reset_at = t0 + rng.randint(20, 100) * 60000 if rng.random() < 0.5 else None
                t = t0 + offset
                while t < t1:
                    if reset_at is not None and t >= reset_at:
                        value = rng.randint(0, 5)
                        reset_at = None
                    else:
                        value += rng.randint(0, 40)
                    lines.append('http_requests_total{job="%s",instance="%s",method="%s"} %d %s'
                                 % (job, inst, method, value, ts(t)))
                    n += 1
                    t += 15000 + rng.randint(-900, 900)
    # Gauges that start late, stop early, or have a gap longer than the lookback.
    lines.append("# TYPE node_load1 gauge")
    for i in range(1, 9):
        inst = "i%d" % i
        region = ("eu-west", "us-east", "ap-south")[i % 3]
        start = t0 + (35 * 60000 if i == 4 else 0) + rng.randint(0, 9999)
        stop = t1 - (40 * 60000 if i == 5 else 0)
        gap = (t0 + 50 * 60000, t0 + 61 * 60000) if i == 6 else None
        value = rng.uniform(0.1, 4)
        t = start
        while t < stop:
            if gap is None or not (gap[0] <= t < gap[1]):
                value = max(0.01, value + rng.uniform(-0.3, 0.3))
                lines.append('node_load1{instance="%s",region="%s"} %.4f %s' % (inst, region, value, ts(t)))
                n += 1
            t += 10000 + rng.randint(0, 2000)
    lines.append("# TYPE temperature_celsius gauge")
    for room in ("lab1", "lab2", "office", "cellar"):
        value = rng.uniform(-5, 25)
        t = t0 + rng.randint(0, 29999)
        while t < t1:
            value += rng.uniform(-0.5, 0.5)
            lines.append('temperature_celsius{room="%s"} %.3f %s' % (room, value, ts(t)))
            n += 1
            t += 30000
    lines.append("# TYPE info_metric gauge")
    for i, version in ((1, "v1"), (2, "v1"), (3, "v2")):
        t = t0 + 5000 * i
        while t < t1:
            lines.append('info_metric{instance="i%d",version="%s"} 1 %s' % (i, version, ts(t)))
            n += 1
            t += 60000
    # A histogram: whole MetricPoints (buckets, count, sum) per timestamp.
    lines.append("# TYPE request_latency_seconds histogram")
    bounds = ["0.05", "0.1", "0.5", "1", "+Inf"]
    for job in ("api", "web"):
        counts = [0] * len(bounds)
        total = 0.0
        t = t0 + rng.randint(0, 14999)
        while t < t1:
            for _ in range(rng.randint(0, 30)):
                x = rng.expovariate(4)
                total += x
                for b, bound in enumerate(bounds):
                    if bound == "+Inf" or x <= float(bound):
                        counts[b] += 1
            for b, bound in enumerate(bounds):
                lines.append('request_latency_seconds_bucket{job="%s",le="%s"} %d %s' % (job, bound, counts[b], ts(t)))
            lines.append('request_latency_seconds_count{job="%s"} %d %s' % (job, counts[-1], ts(t)))
            lines.append('request_latency_seconds_sum{job="%s"} %.6f %s' % (job, total, ts(t)))
            n += len(bounds) + 2
            t += 15000
    lines.append("# EOF")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return n


def prom_query(port, query, params):
    url = "http://127.0.0.1:%d/api/v1/%s?%s" % (port, "query_range" if "step" in params else "query",
                                                 urllib.parse.urlencode(dict(params, query=query)))
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def sheaf_query(addr, query, params):
    args = [SHEAFCTL, "--addr", addr, "--format", "json"]
    if "step" in params:
        args += ["--start", params["start"], "--end", params["end"], "--step", params["step"]]
    else:
        args += ["--time", params["time"]]
    args += ["--", "query", query]  # an expression may start with "-"
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    if p.returncode != 0:
        return None, p.stderr.strip()
    return json.loads(p.stdout), ""


def close(a, b):
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b)) or abs(a - b) <= 1e-12


def key(metric):
    return json.dumps(metric, sort_keys=True)


def compare(prom, sheaf, ordered):
    """'' if equal, else what differs."""
    if prom["resultType"] != sheaf["resultType"]:
        return "result type %s vs %s" % (prom["resultType"], sheaf["resultType"])
    kind = prom["resultType"]
    if kind in ("scalar", "string"):
        p, s = prom["result"], sheaf["result"]
        if p[0] != s[0] or not (close(p[1], s[1]) if kind == "scalar" else p[1] == s[1]):
            return "%s vs %s" % (p, s)
        return ""
    field = "values" if kind == "matrix" else "value"
    ps = [(key(r["metric"]), r[field]) for r in prom["result"]]
    ss = [(key(r["metric"]), r[field]) for r in sheaf["result"]]
    if not ordered:
        ps.sort()
        ss.sort()
    if [k for k, _ in ps] != [k for k, _ in ss]:
        pk, sk = set(k for k, _ in ps), set(k for k, _ in ss)
        return "series differ: only in prometheus %s; only in sheaf %s; order %s" % (
            sorted(pk - sk)[:3], sorted(sk - pk)[:3], "same" if pk == sk else "-")
    for (k, pv), (_, sv) in zip(ps, ss):
        points_p = pv if kind == "matrix" else [pv]
        points_s = sv if kind == "matrix" else [sv]
        if [p[0] for p in points_p] != [s[0] for s in points_s]:
            return "%s: timestamps differ (%d vs %d points; first %s vs %s)" % (
                k, len(points_p), len(points_s), points_p[:2], points_s[:2])
        for p, s in zip(points_p, points_s):
            if not close(p[1], s[1]):
                return "%s at %s: %s vs %s" % (k, p[0], p[1], s[1])
    return ""


def launch_prometheus(tmp, port, config, procs, args=(), timeout=30):
    """Writes `config` to tmp/prometheus.yml and starts Debian's Prometheus
    on loopback `port` with its data in tmp/prom (plus `args`), its process
    added to `procs` and its output appended to tmp/prometheus.log; the
    process once /-/ready answers, None if it does not within `timeout` s.
    Shared by every e2e test that needs a real Prometheus."""
    cfg = os.path.join(tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write(config)
    log = open(os.path.join(tmp, "prometheus.log"), "a")
    p = subprocess.Popen([PROMETHEUS, "--config.file", cfg, "--storage.tsdb.path", os.path.join(tmp, "prom"),
                          "--web.listen-address", "127.0.0.1:%d" % port] + list(args),
                         stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    ok = wait_for(lambda: urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % port, timeout=2).status == 200,
                  timeout)
    return p if ok else None


def start_prometheus(data, tmp, procs, check):
    """Prometheus over `data` (promtool-built blocks in tmp/prom) on a free
    loopback port, its process added to `procs`; the port once it is ready,
    None (and a failed check) if not. Shared with http_api_compat_test.py."""
    blocks = os.path.join(tmp, "prom")
    p = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", data, blocks],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    check("promtool creates blocks", p.returncode == 0, p.stdout[-2000:])
    if p.returncode != 0:
        return None
    port = free_port()
    ready = launch_prometheus(tmp, port, "global:\n  scrape_interval: 1h\nscrape_configs: []\n", procs,
                              ["--storage.tsdb.retention.time", "30d"], timeout=60) is not None
    check("prometheus ready", ready)
    return port if ready else None


def stop(procs, tmp, results):
    """Ends the processes (SIGTERM, SIGKILL after 20 s), removes `tmp` if
    every check passed (else keeps it for inspection), prints the tally.
    Shared with http_api_compat_test.py."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    if results and all(results):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print("kept %s for inspection" % tmp)
    print("%d passed, %d failed" % (sum(results), len(results) - sum(results)))


def main():
    tmp = tempfile.mkdtemp(prefix="sheaf-promql-compat-")
    procs = []
    try:
        now = int(time.time() * 1000)
        t1 = now - 3600 * 1000 - now % 60000 + 13370  # not aligned to anything
        t0 = t1 - 2 * 3600 * 1000
        data = os.path.join(tmp, "data.om")
        n = generate(data, t0, t1)
        print("generated %d samples" % n, flush=True)

        prom_port = start_prometheus(data, tmp, procs, check)
        if prom_port is None:
            return

        # sheafd, loaded through sheafctl import.
        ready_file = os.path.join(tmp, "sheafd.ready")
        sheaf_log = open(os.path.join(tmp, "sheafd.log"), "w")
        procs.append(subprocess.Popen([SHEAFD, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                       "--data-dir", os.path.join(tmp, "sheaf"), "--ready-file", ready_file,
                                       "--wal-sync=false",
                                       # Steps on rollup edges read 1m rollup windows (computed
                                       # from raw samples for data this recent), so that path
                                       # is compared with Prometheus too.
                                       "--query-rollups", "always"], stdout=sheaf_log, stderr=subprocess.STDOUT))
        if not wait_for(lambda: os.path.exists(ready_file) and os.path.getsize(ready_file) > 0, 30):
            check("sheafd ready", False)
            return
        ports = dict(line.split("=") for line in open(ready_file).read().split())
        addr = "127.0.0.1:%s" % ports["grpc_port"]
        p = subprocess.run([SHEAFCTL, "--addr", addr, "import", data], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=300)
        check("sheafctl import", p.returncode == 0, p.stdout[-2000:])
        if p.returncode != 0:
            return

        mid = (t0 + 61 * 60000 + 13250) / 1000.0
        ranges = [
            {"start": "%.3f" % ((t0 + 10 * 60000) / 1000), "end": "%.3f" % ((t1 + 10 * 60000) / 1000), "step": "60s"},
            {"start": "%.3f" % ((t0 + 3 * 60000 + 1234) / 1000), "end": "%.3f" % ((t1 - 5000) / 1000), "step": "37s"},
        ]
        # Steps on minute edges: sheaf answers these from 1m rollup windows.
        aligned = (t0 + 10 * 60000) // 60000 * 60000
        ranges.append({"start": "%d" % (aligned // 1000), "end": "%d" % ((aligned + 100 * 60000) // 1000),
                       "step": "300s"})
        instants = [{"time": "%.3f" % mid}, {"time": "%.3f" % ((t0 + 100 * 60000 + 7001) / 1000)},
                    {"time": "%d" % ((aligned + 60 * 60000) // 1000)}]
        for q in QUERIES:
            q = q.replace("{mid}", "%.3f" % mid)
            ordered = q.startswith("sort") or q.startswith("topk") or q.startswith("bottomk")
            for params in ranges + instants:
                prom = prom_query(prom_port, q, params)
                name = "%s %s" % (q, "step=%s" % params["step"] if "step" in params else "@%s" % params["time"])
                if prom.get("status") != "success":
                    check(name, False, "prometheus failed: %s" % prom.get("error"))
                    continue
                sheaf, err = sheaf_query(addr, q, params)
                if sheaf is None:
                    check(name, False, "sheaf failed: " + err)
                    continue
                diff = compare(prom["data"], sheaf, ordered and "step" not in params)
                if diff and q in DELIBERATE:
                    print("deliberate difference: %s: %s (%s)" % (name, diff, DELIBERATE[q]))
                    diff = ""
                check(name, not diff, diff)
        for q in ERRORS:
            params = instants[0]
            prom = prom_query(prom_port, q, params)
            sheaf, err = sheaf_query(addr, q, params)
            check("error: " + q, prom.get("status") == "error" and sheaf is None,
                  "prometheus: %s; sheaf: %s" % (prom.get("error"), err or "succeeded"))
    finally:
        stop(procs, tmp, results)


if __name__ == "__main__":
    main()
    sys.exit(0 if results and all(results) else 1)
