#!/usr/bin/python3
"""sheafd's Prometheus HTTP API against a real Prometheus on the same data.

The data, its loading and the queries are promql_compat_test.py's (imported,
not copied): two hours of generated OpenMetrics, promtool-built blocks under
Debian's prometheus, `sheafctl import` into sheafd. Here both are asked over
HTTP: every query of that test as /api/v1/query (an unaligned time) and as
/api/v1/query_range (a step that does not divide the data's interval), by
GET and some by form POST; /api/v1/series, /api/v1/labels and
/api/v1/label/<name>/values with match[]; and error cases (bad expression,
bad time, bad step, end before start, too many points, many-to-many
matching, unknown endpoint). The whole JSON answers are compared
structurally, field by field: the same keys, the same list lengths, strings
equal, numbers in strings (sample values) within 1e-9 relative, timestamps
equal; errors by HTTP code, status and errorType (messages differ).
Result lists are compared in order only where the query orders them.

Prints 'N passed, N failed'; exit 1 on any failure.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promql_compat_test as compat  # noqa: E402  (the generator, queries and helpers)

check, results = compat.check, compat.results  # one tally for this run
nonempty = []  # successful query answers with at least one series or a scalar


def call(port, path, params, post=False):
    """(HTTP code, parsed JSON or the raw text)."""
    body = urllib.parse.urlencode(params, doseq=True)
    url = "http://127.0.0.1:%d%s" % (port, path)
    if post:
        request = urllib.request.Request(url, data=body.encode(), method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    else:
        request = urllib.request.Request(url + ("?" + body if body else ""))
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            code, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        code, text = e.code, e.read().decode()
    try:
        return code, json.loads(text)
    except ValueError:
        return code, text


def number(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def canonical(x):
    return json.dumps(x, sort_keys=True)


def diff(p, s, path="", ordered=True):
    """'' if equal, else where and how they differ."""
    if isinstance(p, dict) and isinstance(s, dict):
        if sorted(p) != sorted(s):
            return "%s: keys %s vs %s" % (path or "/", sorted(p), sorted(s))
        for k in p:
            d = diff(p[k], s[k], path + "/" + k, ordered)
            if d:
                return d
        return ""
    if isinstance(p, list) and isinstance(s, list):
        if len(p) != len(s):
            return "%s: %d vs %d items" % (path, len(p), len(s))
        # A result list of series: unordered unless the query orders it.
        if not ordered and p and isinstance(p[0], dict) and "metric" in p[0]:
            p = sorted(p, key=lambda r: canonical(r["metric"]))
            s = sorted(s, key=lambda r: canonical(r["metric"]))
        for i, (a, b) in enumerate(zip(p, s)):
            d = diff(a, b, "%s[%d]" % (path, i), ordered)
            if d:
                return d
        return ""
    if isinstance(p, str) and isinstance(s, str):
        a, b = number(p), number(s)
        if a is not None and b is not None and p != s:
            return "" if compat.close(a, b) else "%s: %s vs %s" % (path, p, s)
        return "" if p == s else "%s: %r vs %r" % (path, p, s)
    if type(p) is not type(s) or p != s:  # timestamps: exactly equal
        return "%s: %r vs %r" % (path, p, s)
    return ""


def compare(name, prom_port, sheaf_port, path, params, ordered=True, post=False):
    pc, pj = call(prom_port, path, params)
    sc, sj = call(sheaf_port, path, params, post=post)
    if pc != sc:
        check(name, False, "HTTP %d vs %d: %s / %s" % (pc, sc, str(pj)[:300], str(sj)[:300]))
        return
    if not isinstance(pj, dict) or pj.get("status") != "success":
        ok = isinstance(pj, dict) and isinstance(sj, dict) and (pj.get("status"), pj.get("errorType")) == (
            sj.get("status"), sj.get("errorType"))
        check(name, ok, "prometheus %s; sheaf %s" % (str(pj)[:300], str(sj)[:300]))
        return
    nonempty.append(bool(pj["data"].get("result")) if isinstance(pj.get("data"), dict) else True)
    check(name, not diff(pj, sj, ordered=ordered), diff(pj, sj, ordered=ordered))


def main():
    tmp = tempfile.mkdtemp(prefix="sheaf-http-api-compat-")
    procs = []
    try:
        now = int(time.time() * 1000)
        t1 = now - 3600 * 1000 - now % 60000 + 13370  # as promql_compat_test: unaligned
        t0 = t1 - 2 * 3600 * 1000
        data = os.path.join(tmp, "data.om")
        print("generated %d samples" % compat.generate(data, t0, t1), flush=True)

        # Prometheus started first: it takes the longest to be ready.
        prom_port = compat.start_prometheus(data, tmp, procs, check)
        if prom_port is None:
            return
        ready_file = os.path.join(tmp, "sheafd.ready")
        procs.append(subprocess.Popen([compat.SHEAFD, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                       "--data-dir", os.path.join(tmp, "sheaf"), "--ready-file", ready_file,
                                       "--wal-sync=false"],
                                      stdout=open(os.path.join(tmp, "sheafd.log"), "w"), stderr=subprocess.STDOUT))
        if not compat.wait_for(lambda: os.path.exists(ready_file) and os.path.getsize(ready_file) > 0, 30):
            check("sheafd ready", False)
            return
        ports = dict(line.split("=") for line in open(ready_file).read().split())
        sheaf_port = int(ports["http_port"])
        p = subprocess.run([compat.SHEAFCTL, "--addr", "127.0.0.1:%s" % ports["grpc_port"], "import", data],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        check("sheafctl import", p.returncode == 0, p.stdout[-2000:])
        if p.returncode != 0:
            return

        mid = (t0 + 61 * 60000 + 13250) / 1000.0
        start, end = "%.3f" % ((t0 + 3 * 60000 + 1234) / 1000), "%.3f" % ((t1 - 5000) / 1000)
        instant = "%.3f" % ((t0 + 100 * 60000 + 7001) / 1000)
        for i, q in enumerate(compat.QUERIES):
            q = q.replace("{mid}", "%.3f" % mid)
            ordered = q.startswith(("sort", "topk", "bottomk"))
            compare("query %s" % q, prom_port, sheaf_port, "/api/v1/query", {"query": q, "time": instant},
                    ordered=ordered, post=i % 3 == 0)
            compare("query_range %s" % q, prom_port, sheaf_port, "/api/v1/query_range",
                    {"query": q, "start": start, "end": end, "step": "37s"}, ordered=False, post=i % 3 == 1)
        # Answers with data, or the comparison would prove little.
        check("most answers hold data (%d of %d)" % (sum(nonempty), len(nonempty)),
              sum(nonempty) >= 0.9 * len(nonempty))
        # Times as RFC 3339, steps as durations.
        rfc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(mid))) + ".250Z"
        compare("query at an RFC 3339 time", prom_port, sheaf_port, "/api/v1/query",
                {"query": "sum by (job) (rate(http_requests_total[5m]))", "time": rfc}, ordered=False)
        compare("query_range with step 1m30s", prom_port, sheaf_port, "/api/v1/query_range",
                {"query": "avg(node_load1)", "start": start, "end": rfc, "step": "1m30s"})

        for name, path, params in [
            ("bad expression", "/api/v1/query", {"query": "sum(rate(x[5m])", "time": instant}),
            ("bad time", "/api/v1/query", {"query": "node_load1", "time": "yesterday"}),
            ("bad start", "/api/v1/query_range", {"query": "node_load1", "start": "x", "end": end, "step": "60"}),
            ("bad step", "/api/v1/query_range", {"query": "node_load1", "start": start, "end": end, "step": "1y2"}),
            ("zero step", "/api/v1/query_range", {"query": "node_load1", "start": start, "end": end, "step": "0"}),
            ("end before start", "/api/v1/query_range",
             {"query": "node_load1", "start": end, "end": start, "step": "60"}),
            ("too many points", "/api/v1/query_range",
             {"query": "node_load1", "start": "0", "end": "20000", "step": "1"}),
            ("range query of a range vector", "/api/v1/query_range",
             {"query": "node_load1[5m]", "start": start, "end": end, "step": "60"}),
            ("many-to-many matching", "/api/v1/query", {"query": compat.ERRORS[2], "time": instant}),
            ("series without match[]", "/api/v1/series", {}),
            ("series matching everything", "/api/v1/series", {"match[]": '{job=~".*"}'}),
            ("bad label name", "/api/v1/label/1bad/values", {}),
        ]:
            compare("error: " + name, prom_port, sheaf_port, path, params)
        # Prometheus answers an unknown path with a plain-text 404, sheafd
        # with the JSON envelope (HTTP_API.md): the code is compared.
        pc, _ = call(prom_port, "/api/v1/nonexistent", {})
        sc, sj = call(sheaf_port, "/api/v1/nonexistent", {})
        check("error: unknown endpoint", pc == sc == 404 and sj.get("errorType") == "not_found", "%d vs %d" % (pc, sc))

        for name, path, params in [
            ("series", "/api/v1/series", {"match[]": ["node_load1", 'http_requests_total{job="api"}']}),
            ("series of a histogram", "/api/v1/series", {"match[]": ['{__name__=~"request_latency.*"}']}),
            ("labels", "/api/v1/labels", {}),
            ("labels of matched series", "/api/v1/labels", {"match[]": ["info_metric", "temperature_celsius"]}),
            ("label values", "/api/v1/label/instance/values", {}),
            ("metric names", "/api/v1/label/__name__/values", {}),
            ("label values of matched series", "/api/v1/label/instance/values", {"match[]": ['node_load1{region="eu-west"}']}),
            ("values of a missing label", "/api/v1/label/nope/values", {}),
        ]:
            pc, pj = call(prom_port, path, params)
            sc, sj = call(sheaf_port, path, params)
            if path == "/api/v1/series" and pc == 200 and sc == 200:
                pj["data"].sort(key=canonical)
                sj["data"].sort(key=canonical)
            d = "HTTP %d vs %d" % (pc, sc) if pc != sc else diff(pj, sj)
            check(name, not d, d)
    finally:
        compat.stop(procs, tmp, results)

if __name__ == "__main__":
    main()
    sys.exit(0 if results and all(results) else 1)
