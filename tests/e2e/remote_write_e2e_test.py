#!/usr/bin/python3
"""Debian's Prometheus remote-writing its own scrapes into sheafd.

Starts sheafd and a prometheus (both on loopback, temp dirs) whose config
scrapes prometheus' own /metrics every second and remote-writes to
sheafd's POST /api/v1/write. Within 20 s sheafd must hold
prometheus_build_info and up{job="prometheus"} with samples of the last
30 s (read through `sheafctl query`), and prometheus must report no failed
or dropped samples (prometheus_remote_storage_samples_failed_total and
..._dropped_total are 0, from its /metrics) while some were sent.

Prints 'N passed, N failed'; exit 1 on any failure.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

SHEAFD = os.environ["SHEAFD"]
SHEAFCTL = os.environ["SHEAFCTL"]

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The shared helpers; `results` is that module's list, which `check` fills.
from promql_compat_test import check, free_port, launch_prometheus, results, stop, wait_for  # noqa: E402


def metric_values(port, name):
    """Values of every series of `name` on http://127.0.0.1:port/metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    return [float(m.group(1)) for m in re.finditer(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M)]


def sheaf_query(addr, expr):
    """An instant query through sheafctl: [(labels, value as text)], or None."""
    p = subprocess.run([SHEAFCTL, "--addr", addr, "--format", "json", "--", "query", expr],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    if p.returncode != 0:
        print("sheafctl query %s: %s" % (expr, p.stderr.strip()), flush=True)
        return None
    answer = json.loads(p.stdout)
    if "result" not in answer:
        print("sheafctl query %s: %s" % (expr, p.stdout[:500]), flush=True)
        return None
    return [(s["metric"], s["value"][1]) for s in answer["result"]]


def newest_sample_age_s(addr, selector):
    """Age in seconds of the newest sample of `selector` in sheafd, or None."""
    result = sheaf_query(addr, "time() - timestamp(%s)" % selector)
    return min(float(v) for _, v in result) if result else None


def main():
    tmp = tempfile.mkdtemp(prefix="sheaf-remote-write-")
    procs = []
    started = time.time()
    try:
        ready_file = os.path.join(tmp, "sheafd.ready")
        sheaf_log = open(os.path.join(tmp, "sheafd.log"), "w")
        procs.append(subprocess.Popen([SHEAFD, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                       "--data-dir", os.path.join(tmp, "sheaf"), "--ready-file", ready_file,
                                       "--wal-sync=false"], stdout=sheaf_log, stderr=subprocess.STDOUT))
        if not wait_for(lambda: os.path.exists(ready_file) and os.path.getsize(ready_file) > 0, 30):
            check("sheafd ready", False)
            return
        ports = dict(line.split("=") for line in open(ready_file).read().split())
        addr = "127.0.0.1:%s" % ports["grpc_port"]

        prom_port = free_port()
        config = ("""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:%d']
remote_write:
  - url: http://127.0.0.1:%s/api/v1/write
    queue_config:
      batch_send_deadline: 1s
""" % (prom_port, ports["http_port"]))
        ready = launch_prometheus(tmp, prom_port, config, procs) is not None
        check("prometheus ready", ready)
        if not ready:
            return

        for selector in ['prometheus_build_info', 'up{job="prometheus"}']:
            fresh = wait_for(lambda: newest_sample_age_s(addr, selector) is not None and
                             newest_sample_age_s(addr, selector) < 30, 20)
            check("sheafd holds recent %s" % selector, fresh, "age %s s" % newest_sample_age_s(addr, selector))
        # up is 1: the scrape worked and its value crossed intact.
        # (An expression: a bare selector makes sheafctl print raw samples.)
        up = sheaf_query(addr, 'last_over_time(up{job="prometheus"}[1m])')
        check("up{job=\"prometheus\"} is 1 in sheafd", up is not None and [v for _, v in up] == ["1"], str(up))

        # Let a few more sends happen, then read prometheus' own counters.
        sent = metric_values(prom_port, "prometheus_remote_storage_samples_total")
        wait_for(lambda: sum(metric_values(prom_port, "prometheus_remote_storage_samples_total")) > sum(sent), 10)
        sent = sum(metric_values(prom_port, "prometheus_remote_storage_samples_total"))
        failed = metric_values(prom_port, "prometheus_remote_storage_samples_failed_total")
        dropped = metric_values(prom_port, "prometheus_remote_storage_samples_dropped_total")
        retried = metric_values(prom_port, "prometheus_remote_storage_samples_retried_total")
        print("prometheus sent %d samples; failed %s, dropped %s, retried %s" % (sent, failed, dropped, retried))
        check("prometheus sent samples", sent > 0)
        check("no samples failed", failed == [0.0], str(failed))
        check("no samples dropped", all(v == 0 for v in dropped), str(dropped))
        check("prometheus retried nothing", all(v == 0 for v in retried), str(retried))
        # sheafd's side: every request answered 204; series it refused by
        # its Push rules (e.g. NaN summary quantiles) are counted there.
        with urllib.request.urlopen("http://127.0.0.1:%s/metrics" % ports["http_port"], timeout=5) as r:
            sheaf_metrics = r.read().decode()
        codes = dict(re.findall(r'^sheaf_remote_write_received_requests_total\{code="(\d+)"\} (\S+)$', sheaf_metrics, re.M))
        check("sheafd answered every remote write 204", list(codes) == ["204"] and float(codes["204"]) > 0, str(codes))
        print("sheafd refused series: %s" % [l for l in re.findall(r"^sheaf_ingest_rejected_series_total\{.*$", sheaf_metrics, re.M) if not l.endswith(" 0")])
    finally:
        stop(procs, tmp, results)
    print("%.1f s" % (time.time() - started))


if __name__ == "__main__":
    main()
    sys.exit(0 if results and all(results) else 1)
