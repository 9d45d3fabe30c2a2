#!/usr/bin/python3
"""The global view: Debian's Prometheus remote-reading two sheafd.

Generates 30 minutes of a gauge for 20 hosts in three regions (values on
a quarter grid, so every sum is exact in binary floating point) and a
counter, imports hosts h00-h09 into one sheafd and h10-h19 into another
(sheafctl import), and starts a prometheus (loopback, empty local TSDB)
with remote_read to both sheafd's POST /api/v1/read (read_recent: true).
Through Prometheus' /api/v1/query and /api/v1/query_range:
- `sum by (region) (cpu_busy)` equals the sum computed from the generated
  data exactly, instant and range, and equals the two sheafd's own answers
  (their /api/v1/query) added;
- a regex and a negative regex matcher select exactly the expected hosts;
- `sum by (region) (rate(req_total[5m]))` equals the two sheafd's answers
  added (within 1e-9 relative);
- no answer carries a warning (a failed remote read would), and both
  sheafd counted their remote reads as 200;
- past the second sheafd's --query-max-series (10), Prometheus still
  answers the first one's series, with sheafd's 400 message as a warning.

Prints 'N passed, N failed'; exit 1 on any failure.
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

SHEAFD = os.environ["SHEAFD"]
SHEAFCTL = os.environ["SHEAFCTL"]

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The shared helpers; `results` is that module's list, which `check` fills.
from promql_compat_test import check, free_port, launch_prometheus, results, stop, wait_for  # noqa: E402

HOSTS = ["h%02d" % i for i in range(20)]
REGIONS = ("eu-west", "us-east", "ap-south")
STEP_MS = 15000
POINTS = 121  # 30 minutes


def region(i):
    return REGIONS[i % 3]


def busy(i, k):
    """cpu_busy of host i at its k-th sample: a multiple of 0.25."""
    return ((i * 37 + k * 11) % 400) / 4.0


def generate(path, hosts, t0):
    """OpenMetrics text of `hosts` (indices) from t0 every 15 s."""
    lines = ["# TYPE cpu_busy gauge"]
    for i in hosts:
        for k in range(POINTS):
            lines.append('cpu_busy{host="%s",region="%s"} %s %.3f'
                         % (HOSTS[i], region(i), repr(busy(i, k)), (t0 + k * STEP_MS) / 1000.0))
    lines.append("# TYPE req counter")
    for i in hosts:
        total = 0
        for k in range(POINTS):
            total += (i * 13 + k * 7) % 50
            lines.append('req_total{host="%s",region="%s"} %d %.3f'
                         % (HOSTS[i], region(i), total, (t0 + k * STEP_MS) / 1000.0))
    lines.append("# EOF")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def expected_sum(t0, t_ms, host_filter=lambda h: True):
    """sum by (region) (cpu_busy{...}) at t_ms from the generated data:
    each series' newest sample at or before t_ms within the 5m lookback."""
    k = (t_ms - t0) // STEP_MS
    if k < 0:
        return {}
    k = min(k, POINTS - 1)
    if t_ms - (t0 + k * STEP_MS) > 5 * 60000:  # Prometheus 2.x: a sample exactly 5m old still counts
        return {}
    out = {}
    for i, h in enumerate(HOSTS):
        if host_filter(h):
            out[region(i)] = out.get(region(i), 0.0) + busy(i, k)
    return out


def api(port, endpoint, params):
    url = "http://127.0.0.1:%d/api/v1/%s?%s" % (port, endpoint, urllib.parse.urlencode(params))
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def by_region(answer, instant):
    """{region: value} of an instant answer, {region: {t_ms: value}} of a range one."""
    out = {}
    for s in answer["data"]["result"]:
        r = s["metric"].get("region", "")
        if instant:
            out[r] = float(s["value"][1])
        else:
            out[r] = {round(float(t) * 1000): float(v) for t, v in s["values"]}
    return out


def ok_answer(name, answer):
    good = answer.get("status") == "success" and not answer.get("warnings")
    check(name + " succeeds without warnings", good,
          "%s %s %s" % (answer.get("status"), answer.get("error"), answer.get("warnings")))
    return good


def added(a, b):
    out = dict(a)
    for r, v in b.items():
        if isinstance(v, dict):
            merged = dict(out.get(r, {}))
            for t, x in v.items():
                merged[t] = merged.get(t, 0.0) + x
            out[r] = merged
        else:
            out[r] = out.get(r, 0.0) + v
    return out


def close(a, b):
    if isinstance(a, dict) != isinstance(b, dict):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def start_sheafd(tmp, name, procs, flags):
    ready_file = os.path.join(tmp, name + ".ready")
    log = open(os.path.join(tmp, name + ".log"), "w")
    procs.append(subprocess.Popen([SHEAFD, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                   "--data-dir", os.path.join(tmp, name), "--ready-file", ready_file,
                                   "--wal-sync=false"] + flags, stdout=log, stderr=subprocess.STDOUT))
    if not wait_for(lambda: os.path.exists(ready_file) and os.path.getsize(ready_file) > 0, 30):
        check("%s ready" % name, False)
        return None
    return dict(line.split("=") for line in open(ready_file).read().split())


def main():
    tmp = tempfile.mkdtemp(prefix="sheaf-remote-read-")
    procs = []
    started = time.time()
    try:
        now = int(time.time() * 1000)
        t1 = now - 120000 - now % STEP_MS
        t0 = t1 - (POINTS - 1) * STEP_MS
        sheafd = []
        # b holds 20 series and reads at most 10 per request: its limit is
        # met by the queries above, and passed by the last one.
        for name, hosts, flags in (("a", range(0, 10), []), ("b", range(10, 20), ["--query-max-series", "10"])):
            data = os.path.join(tmp, name + ".om")
            generate(data, hosts, t0)
            ports = start_sheafd(tmp, name, procs, flags)
            if ports is None:
                return
            p = subprocess.run([SHEAFCTL, "--addr", "127.0.0.1:%s" % ports["grpc_port"], "import", data],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
            check("sheafctl import into %s" % name, p.returncode == 0, p.stdout[-2000:])
            if p.returncode != 0:
                return
            sheafd.append(int(ports["http_port"]))

        prom_port = free_port()
        config = "global:\n  scrape_interval: 1h\nscrape_configs: []\nremote_read:\n" + "".join(
            "  - url: http://127.0.0.1:%d/api/v1/read\n    read_recent: true\n" % port for port in sheafd)
        ready = launch_prometheus(tmp, prom_port, config, procs) is not None
        check("prometheus ready", ready)
        if not ready:
            return

        # Instant: between two samples, so the lookback picks the earlier one.
        at_ms = t0 + 60 * STEP_MS + 7000
        instant = {"time": "%.3f" % (at_ms / 1000.0)}
        expr = "sum by (region) (cpu_busy)"
        prom = api(prom_port, "query", dict(instant, query=expr))
        if ok_answer("instant " + expr, prom):
            got = by_region(prom, True)
            want = expected_sum(t0, at_ms)
            check("instant %s is exact" % expr, got == want, "got %s want %s" % (got, want))
            parts = [by_region(api(p, "query", dict(instant, query=expr)), True) for p in sheafd]
            check("instant %s equals the two sheafd added" % expr, got == added(*parts),
                  "got %s parts %s" % (got, parts))

        # Range: from before the data starts to after it ends (lookback
        # tail); no step falls exactly 5m after the last sample.
        start_ms, end_ms = t0 - 121000, t1 + 420000
        rng = {"start": "%.3f" % (start_ms / 1000.0), "end": "%.3f" % (end_ms / 1000.0), "step": "37"}
        prom = api(prom_port, "query_range", dict(rng, query=expr))
        if ok_answer("range " + expr, prom):
            got = by_region(prom, False)
            want = {}
            for t in range(start_ms, end_ms + 1, 37000):
                for r, v in expected_sum(t0, t).items():
                    want.setdefault(r, {})[t] = v
            check("range %s is exact (%d points)" % (expr, sum(len(v) for v in want.values())), got == want,
                  "got %s\nwant %s" % (got, want))
            parts = [by_region(api(p, "query_range", dict(rng, query=expr)), False) for p in sheafd]
            check("range %s equals the two sheafd added" % expr, got == added(*parts))

        # Regex matchers, anchored: h0[2-5] and h1[4-7], then everything not h1*.
        expr = 'sum by (region) (cpu_busy{host=~"h0[2-5]|h1[4-7]"})'
        prom = api(prom_port, "query", dict(instant, query=expr))
        if ok_answer("instant " + expr, prom):
            want = expected_sum(t0, at_ms, lambda h: re.fullmatch(r"h0[2-5]|h1[4-7]", h) is not None)
            check("instant %s is exact" % expr, by_region(prom, True) == want,
                  "got %s want %s" % (by_region(prom, True), want))
        expr = 'count(cpu_busy{host!~"h1.*"})'
        prom = api(prom_port, "query", dict(instant, query=expr))
        if ok_answer("instant " + expr, prom):
            check("instant %s is 10" % expr, [s["value"][1] for s in prom["data"]["result"]] == ["10"],
                  str(prom["data"]["result"]))

        # A function over a range: Prometheus evaluates rate() on the raw samples both sheafd sent.
        expr = "sum by (region) (rate(req_total[5m]))"
        prom = api(prom_port, "query_range", dict(rng, query=expr))
        if ok_answer("range " + expr, prom):
            got = by_region(prom, False)
            parts = [by_region(api(p, "query_range", dict(rng, query=expr)), False) for p in sheafd]
            check("range %s equals the two sheafd added" % expr, close(got, added(*parts)) and len(got) == 3,
                  "got %s parts %s" % (got, parts))

        codes = []
        for name, port in zip("ab", sheafd):
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
                text = r.read().decode()
            codes.append(dict(re.findall(r'^sheaf_remote_read_requests_total\{code="(\d+)"\} (\S+)$', text, re.M)))
            check("sheafd %s answered every remote read 200" % name,
                  list(codes[-1]) == ["200"] and float(codes[-1]["200"]) >= 5, str(codes[-1]))

        # Over b's --query-max-series: Prometheus treats remote storage as
        # secondary, so the answer holds a's data and a warning with b's message.
        expr = 'count({__name__=~"cpu_busy|req_total"})'
        prom = api(prom_port, "query", dict(instant, query=expr))
        print("over the limit: %s" % json.dumps(prom)[:600], flush=True)
        check("over b's limit, prometheus warns with sheafd's message",
              prom.get("status") == "success" and
              any("--query-max-series" in w for w in prom.get("warnings", [])), json.dumps(prom)[:1000])
        check("over b's limit, a's series are still answered",
              prom.get("status") == "success" and [s["value"][1] for s in prom["data"]["result"]] == ["20"],
              json.dumps(prom)[:1000])
    finally:
        stop(procs, tmp, results)
    print("%.1f s" % (time.time() - started))


if __name__ == "__main__":
    main()
    sys.exit(0 if results and all(results) else 1)
