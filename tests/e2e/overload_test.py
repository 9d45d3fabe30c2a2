#!/usr/bin/python3
"""sheafd under load well beyond what it can take, with --memory-limit.

Several sheaf-loadgen processes push a fleet of a million new series at
once, far more than fits in LIMIT_MIB of memory. The test samples sheafd's
resident set (VmRSS in /proc/PID/status) every 20 ms throughout and checks
that it never exceeds --memory-limit, that sheafd shed load with
RESOURCE_EXHAUSTED naming --memory-limit, that it was never killed, and
that afterwards it is alive and answers queries (gRPC and HTTP) and
/metrics.

Prints 'N passed, N failed'; about 20 s.
"""
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from fault_support import Sheafd, check, kill, rss_kib, show_logs_if_failed, summary

SHEAFCTL = os.environ["SHEAFCTL"]
LOADGEN = os.environ["SHEAF_LOADGEN"]
LIMIT_MIB = int(os.environ.get("OVERLOAD_LIMIT_MIB", "128"))
LOAD_SECONDS = float(os.environ.get("OVERLOAD_SECONDS", "15"))
# (hosts, series per host) of each loader.
FLEETS = [(900, 100), (9000, 20), (20000, 10)]


def main():
    started = time.time()
    limit = LIMIT_MIB << 20
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Sheafd(tmp, os.path.join(tmp, "data"),
                        ["--wal-sync=false", "--grace-period", "2s", "--memory-limit", str(limit),
                         # RocksDB's fixed budgets, small enough for a 128 MiB limit
                         "--write-buffer-bytes", str(16 << 20), "--block-cache-bytes", str(16 << 20)])
        loaders = []
        try:
            if not check("sheafd starts", daemon.start()):
                return summary()
            with open("/proc/%d/maps" % daemon.proc.pid) as f:
                if "libasan" in f.read():
                    print("skipped: under AddressSanitizer sheafd's resident memory is mostly ASan's")
                    return 77
            pid = daemon.proc.pid
            idle = rss_kib(pid)
            peak = [idle]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    r = rss_kib(pid)
                    if r is not None:
                        peak[0] = max(peak[0], r)
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            # Each loader a fleet of its own (host names are as wide as the
            # host count: host-001, host-0001, host-00001), about 470,000
            # series in all, pushed again and again until the time is up.
            outputs = []
            deadline = time.time() + LOAD_SECONDS

            def load(i):
                run = 0
                while time.time() < deadline:
                    run += 1
                    hosts, per_host = FLEETS[i]
                    p = subprocess.Popen([LOADGEN, "--addr", daemon.addr, "--hosts", str(hosts), "--series-per-host",
                                          str(per_host), "--points", "3", "--streams", "8",
                                          "--agent-prefix", "load%d-%d" % (i, run)],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                    loaders.append(p)
                    try:
                        out, _ = p.communicate(timeout=max(1, deadline - time.time()))
                    except subprocess.TimeoutExpired:
                        p.kill()
                        out, _ = p.communicate()
                    outputs.append(out)

            threads = [threading.Thread(target=load, args=(i,)) for i in range(len(FLEETS))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            stop.set()
            sampler.join()
            text = "\n".join(outputs)
            shed = len(re.findall(r"code 8: sheafd is over --memory-limit=%d" % limit, text))
            print("sheafd RSS idle %d MiB, peak %d MiB, limit %d MiB; %d streams refused for memory" %
                  (idle >> 10, peak[0] >> 10, LIMIT_MIB, shed))
            check("sheafd is alive (never killed)", daemon.alive(), "exit %s" % daemon.proc.poll())
            check("its resident memory stayed within --memory-limit (peak %d MiB <= %d MiB)" %
                  (peak[0] >> 10, LIMIT_MIB), peak[0] <= limit >> 10)
            check("it shed load with RESOURCE_EXHAUSTED naming --memory-limit", shed > 0, text[-3000:])
            rc = subprocess.run([SHEAFCTL, "--addr", daemon.addr, "--limit", "3", "series", '{job="node"}'],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
            check("it answers gRPC queries", rc.returncode == 0 and "node_" in rc.stdout, rc.stdout[-2000:])
            try:
                stored = daemon.query('count({job="node"})')
            except (OSError, RuntimeError) as e:
                stored = str(e)
            check("it answers HTTP queries", isinstance(stored, list) and len(stored) == 1, str(stored)[:300])
            metrics = daemon.get("/metrics")
            check("it serves /metrics, counting the refused streams",
                  re.search(r'sheaf_ingest_stream_errors_total\{grpc_code="RESOURCE_EXHAUSTED"\} [1-9]', metrics)
                  is not None, "\n".join(line for line in metrics.splitlines() if "stream_errors" in line))
            check("SIGTERM exits 0", daemon.stop() == 0)
            print("%s series stored; %.1f s" % (stored[0]["value"][1] if isinstance(stored, list) and stored else "?",
                                                time.time() - started))
        finally:
            for p in loaders:
                kill(p)
            daemon.close()
            show_logs_if_failed(daemon.log_path)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
