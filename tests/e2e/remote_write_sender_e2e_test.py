#!/usr/bin/python3
"""sheafd's remote-write sender against Debian's VictoriaMetrics and
Prometheus, with both receivers restarted mid-stream.

Starts victoria-metrics and prometheus --web.enable-remote-write-receiver
(loopback, temp dirs), and sheafd whose config file forwards
- everything ({__name__=~".+"}) to VictoriaMetrics,
- the fleet aggregates (the default `match`: names with ':') to Prometheus,
with a recording rule making aggregates every second. sheaf-loadgen pushes
a fleet in three runs, in time order per series: one with both receivers
up, one while both are down (Prometheus killed with SIGKILL; VictoriaMetrics
stopped with SIGTERM, since it keeps the last second of writes in memory and
would lose them on a SIGKILL, sheaf or not), one after both came back.
The rule's aggregates keep flowing throughout. Then, over a fixed window,
the samples each receiver holds must equal sheafd's exactly, series by
series; sheafd must have retried (it saw the outage) and dropped nothing.

Prints 'N passed, N failed'; exit 1 on any failure.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

SHEAFD = os.environ["SHEAFD"]
LOADGEN = os.environ["SHEAF_LOADGEN"]
VICTORIA = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The shared helpers; `results` is that module's list, which `check` fills.
from promql_compat_test import check, free_port, launch_prometheus, results, stop, wait_for  # noqa: E402

WINDOW_S = 600  # compared: samples in (t_end - WINDOW_S, t_end]


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def key(metric):
    return tuple(sorted(metric.items()))


def raw_samples(port, selector, t_end):
    """Prometheus HTTP API (sheafd's or Prometheus'): the raw samples of
    `selector` in the window, as {series: [timestamps in s]}."""
    q = urllib.parse.urlencode({"query": "%s[%ds]" % (selector, WINDOW_S), "time": "%.3f" % t_end})
    answer = json.loads(get("http://127.0.0.1:%d/api/v1/query?%s" % (port, q), timeout=30))
    if answer.get("status") != "success":
        raise RuntimeError(str(answer)[:500])
    return {key(s["metric"]): [float(v[0]) for v in s["values"]] for s in answer["data"]["result"]}


def counts(samples):
    return {k: len(v) for k, v in samples.items()}


def victoria_samples(port, selector, t_end):
    """VictoriaMetrics' raw export in the window: ({series: distinct
    timestamps}, duplicates). A request that reached VictoriaMetrics but
    whose answer was lost is sent again (at least once, as every
    remote-write sender does): the same sample twice, counted apart."""
    q = urllib.parse.urlencode({"match[]": selector, "start": "%d" % (t_end - WINDOW_S - 60),
                                "end": "%d" % (t_end + 60)})
    counts, duplicates = {}, 0
    lo, hi = int((t_end - WINDOW_S) * 1000), int(t_end * 1000)
    for line in get("http://127.0.0.1:%d/api/v1/export?%s" % (port, q), timeout=30).splitlines():
        if not line.strip():
            continue
        s = json.loads(line)
        ts = [t for t in s["timestamps"] if lo < t <= hi]
        duplicates += len(ts) - len(set(ts))
        if ts:
            counts[key(s["metric"])] = len(set(ts))
    return counts, duplicates


def sheaf_metric(port, name, remote):
    text = get("http://127.0.0.1:%d/metrics" % port)
    total = 0.0
    for labels, value in re.findall(r"^%s\{([^}]*)\} (\S+)$" % re.escape(name), text, re.M):
        if 'remote="%s"' % remote in labels:
            total += float(value)
    return total


def start_victoria(tmp, port, procs):
    log = open(os.path.join(tmp, "victoria.log"), "a")
    p = subprocess.Popen([VICTORIA, "-httpListenAddr", "127.0.0.1:%d" % port,
                          "-storageDataPath", os.path.join(tmp, "victoria"), "-retentionPeriod", "1y",
                          "-search.disableCache", "-search.latencyOffset", "0s"],
                         stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    ok = wait_for(lambda: get("http://127.0.0.1:%d/health" % port, timeout=2).strip() == "OK", 30)
    return p if ok else None


def start_prometheus(tmp, port, procs):
    return launch_prometheus(tmp, port, "global:\n  scrape_interval: 1h\nscrape_configs: []\n", procs,
                             ["--web.enable-remote-write-receiver"])


def loadgen(grpc, prefix, start_ms, points, tmp):
    p = subprocess.run([LOADGEN, "--addr", grpc, "--hosts", "20", "--series-per-host", "10", "--points",
                        str(points), "--interval", "1s", "--start-ms", str(start_ms), "--agent-prefix", prefix,
                        "--streams", "2"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    check("loadgen %s" % prefix, p.returncode == 0, p.stdout[-1000:])


def main():
    tmp = tempfile.mkdtemp(prefix="sheaf-rw-sender-")
    procs = []
    started = time.time()
    try:
        vm_port, prom_port = free_port(), free_port()
        vm = start_victoria(tmp, vm_port, procs)
        check("victoria-metrics ready", vm is not None)
        prom = start_prometheus(tmp, prom_port, procs)
        check("prometheus ready", prom is not None)
        if vm is None or prom is None:
            return

        rules = os.path.join(tmp, "rules.yml")
        with open(rules, "w") as f:
            f.write("groups:\n  - name: fleet\n    rules:\n"
                    "      - record: region:node_load1:sum\n        expr: sum by (region) (node_load1)\n"
                    "      - record: fleet:node_load1:count\n        expr: count(node_load1)\n")
        timing = ("    batch_send_deadline: 200ms\n    min_backoff: 50ms\n    max_backoff: 1s\n"
                  "    remote_timeout: 5s\n")
        cfg = os.path.join(tmp, "sheafd.yaml")
        with open(cfg, "w") as f:
            f.write("rule_files: [%s]\nrule_evaluation_interval: 1s\nremote_write:\n"
                    "  - url: http://127.0.0.1:%d/api/v1/write\n    name: victoria\n"
                    "    match: ['{__name__=~\".+\"}']\n%s"
                    "  - url: http://127.0.0.1:%d/api/v1/write\n    name: prometheus\n%s"
                    % (rules, vm_port, timing, prom_port, timing))
        ready_file = os.path.join(tmp, "sheafd.ready")
        sheaf_log = open(os.path.join(tmp, "sheafd.log"), "w")
        procs.append(subprocess.Popen([SHEAFD, "--config", cfg, "--grpc-listen", "127.0.0.1:0",
                                       "--http-listen", "127.0.0.1:0", "--data-dir", os.path.join(tmp, "sheaf"),
                                       "--ready-file", ready_file, "--wal-sync=false"],
                                      stdout=sheaf_log, stderr=subprocess.STDOUT))
        if not wait_for(lambda: os.path.exists(ready_file) and os.path.getsize(ready_file) > 0, 30):
            check("sheafd ready", False)
            return
        ports = dict(line.split("=") for line in open(ready_file).read().split())
        grpc, http = "127.0.0.1:%s" % ports["grpc_port"], int(ports["http_port"])

        # Three runs of 30 points a series, each after the one before.
        t0_ms = int(time.time() * 1000) - 90_000
        loadgen(grpc, "before", t0_ms, 30, tmp)
        check("victoria-metrics receives", wait_for(lambda: sheaf_metric(http, "sheaf_remote_write_samples_sent_total",
                                                                          "victoria") >= 6000, 15))

        # Both receivers go away mid-stream; data keeps arriving in sheafd.
        outage_start = time.time()
        prom.kill()
        prom.wait()
        vm.send_signal(signal.SIGTERM)
        vm.wait(timeout=30)
        loadgen(grpc, "during", t0_ms + 30_000, 30, tmp)
        check("sheafd retries while they are away",
              wait_for(lambda: sheaf_metric(http, "sheaf_remote_write_retries_total", "victoria") >= 3 and
                       sheaf_metric(http, "sheaf_remote_write_retries_total", "prometheus") >= 3, 15))
        check("the lag shows the outage",
              wait_for(lambda: sheaf_metric(http, "sheaf_remote_write_lag_seconds", "victoria") > 0.5, 10))
        time.sleep(3)  # the outage lasts a few rule evaluations
        outage_end = time.time()
        vm = start_victoria(tmp, vm_port, procs)
        prom = start_prometheus(tmp, prom_port, procs)
        check("both receivers back", vm is not None and prom is not None)
        if vm is None or prom is None:
            return
        loadgen(grpc, "after", t0_ms + 60_000, 30, tmp)

        # Everything accepted before t_send has been sent once the senders
        # are seen with nothing pending (they send in order).
        def drained():
            return all(sheaf_metric(http, "sheaf_remote_write_samples_pending", r) == 0
                       for r in ("victoria", "prometheus"))
        check("the senders catch up", wait_for(drained, 30))
        t_end = int(time.time()) - 3  # rule samples up to here are sent (they arrive within ms)
        check("the senders catch up again", wait_for(drained, 30))

        sheaf_all = counts(raw_samples(http, '{__name__=~".+"}', t_end))
        aggregate_times = raw_samples(http, '{__name__=~".*:.*"}', t_end)
        sheaf_aggregates = counts(aggregate_times)
        n_all, n_agg = sum(sheaf_all.values()), sum(sheaf_aggregates.values())
        print("sheafd holds %d samples in %d series, %d of them in %d aggregate series" %
              (n_all, len(sheaf_all), n_agg, len(sheaf_aggregates)))
        check("sheafd holds the three runs", sum(v for k, v in sheaf_all.items() if ":" not in dict(k)["__name__"]) ==
              20 * 10 * 90, str(n_all))
        during = sum(1 for v in aggregate_times.values() for ts in v if outage_start <= ts <= outage_end)
        check("the rules made aggregates while the receivers were away", during > 0,
              "%d aggregate samples in the window, none in %.1f-%.1f: %s" %
              (n_agg, outage_start, outage_end, list(aggregate_times.values())[:1]))

        vm_counts, dups = [None], [0]

        def victoria_equal():
            vm_counts[0], dups[0] = victoria_samples(vm_port, '{__name__=~".+"}', t_end)
            return vm_counts[0] == sheaf_all
        ok = wait_for(victoria_equal, 20)  # VictoriaMetrics makes new data searchable within a second or two
        diff = {k: (sheaf_all.get(k), vm_counts[0].get(k)) for k in set(sheaf_all) | set(vm_counts[0] or {})
                if sheaf_all.get(k) != (vm_counts[0] or {}).get(k)} if vm_counts[0] is not None else {}
        check("victoria-metrics holds sheafd's samples exactly, series by series", ok,
              "%d series differ, e.g. %s" % (len(diff), list(diff.items())[:3]))
        print("victoria-metrics: %d samples, %d series, %d duplicate deliveries" %
              (sum((vm_counts[0] or {}).values()), len(vm_counts[0] or {}), dups[0]))

        prom_counts = counts(raw_samples(prom_port, '{__name__=~".+"}', t_end))
        diff = {k: (sheaf_aggregates.get(k), prom_counts.get(k)) for k in set(sheaf_aggregates) | set(prom_counts)
                if sheaf_aggregates.get(k) != prom_counts.get(k)}
        check("prometheus holds sheafd's aggregates exactly, series by series (and nothing else)",
              prom_counts == sheaf_aggregates, "%d series differ, e.g. %s" % (len(diff), list(diff.items())[:3]))

        for remote in ("victoria", "prometheus"):
            dropped = sheaf_metric(http, "sheaf_remote_write_samples_dropped_total", remote)
            errors = [l for l in re.findall(r'^sheaf_remote_write_requests_total\{code="error",remote="%s"\} \S+$'
                                            % remote, get("http://127.0.0.1:%d/metrics" % http), re.M)]
            check("%s: nothing dropped, the outage seen as failed requests" % remote,
                  dropped == 0 and len(errors) == 1, "dropped %s, %s" % (dropped, errors))
    finally:
        stop(procs, tmp, results)
    print("%.1f s" % (time.time() - started))


if __name__ == "__main__":
    main()
    sys.exit(0 if results and all(results) else 1)
