#!/usr/bin/env bash
# PromQL query benchmark, end to end: sheaf-loadgen's default fleet (1000
# hosts x 10 series x 360 points at 10 s: the hour before now, 4,000
# node_cpu_seconds_total series) into a fresh sheafd, then the peers' query
#   sum by (region) (rate(node_cpu_seconds_total[1m]))   over the hour, step 60s
# RUNS times (default 11) as a whole `sheafctl query` process; prints each
# run's wall time of the process and the daemon's evaluation time (the
# answer's stats), then the medians. Then the engine alone
# (tests/bench/promql_bench: the same query from the head and from blocks,
# and a 30-day range at a 1h step over rollups).
#   bash tools/bench_query.sh          # RUNS=21 WARMUP=10 bash tools/bench_query.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
bash deploy/build.sh >/dev/null
RUNS=${RUNS:-11}
B=${BENCH_BUILD:-./build}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
$B/daemon/sheafd --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --data-dir "$work/data" \
  --ready-file "$work/ready" --log-level warn &
for _ in $(seq 100); do [ -f "$work/ready" ] && break; sleep 0.1; done
gp=$(sed -n 's/grpc_port=//p' "$work/ready")
$B/tools/sheaf-loadgen --addr "127.0.0.1:$gp" | grep -E 'samples_acked|samples_per_second' | sed 's/^/loadgen: /'
# The load leaves sheafd cutting its head into blocks and compacting for a
# few seconds; the query is timed once that is over (sheafd under 5% of a
# core for two seconds running, at most 60 s of waiting), as a dashboard
# would meet it, not racing the import.
dpid=$(jobs -p | head -1)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$dpid/stat"; }
quiet=0
for _ in $(seq 60); do
  before=$(cpu_ticks); sleep 1; after=$(cpu_ticks)
  if [ $(( after - before )) -le $(( $(getconf CLK_TCK) / 20 )) ]; then quiet=$((quiet + 1)); else quiet=0; fi
  [ "$quiet" -ge 2 ] && break
done
echo "sheafd idle after the load (its background work done): $([ "$quiet" -ge 2 ] && echo yes || echo 'no, timed anyway')"
query='sum by (region) (rate(node_cpu_seconds_total[1m]))'
# Untimed warm-up queries (WARMUP, default 5): the store's block cache,
# the page cache and the allocator reach their steady state, as for a
# dashboard that refreshes.
for _ in $(seq "${WARMUP:-5}"); do
  $B/tools/sheafctl --addr "127.0.0.1:$gp" query "$query" --step 60s --since 1h >/dev/null 2>&1
done

walls=()
evals=()
for i in $(seq "$RUNS"); do
  start=$(date +%s%N)
  summary=$($B/tools/sheafctl --addr "127.0.0.1:$gp" query "$query" --step 60s --since 1h 2>&1 >/dev/null)
  end=$(date +%s%N)
  wall=$(( (end - start) / 1000000 ))
  eval_ms=$(echo "$summary" | sed -n 's/.* in \([0-9.]*\) s$/\1/p' | awk '{printf "%.1f", $1 * 1000}')
  walls+=("$wall")
  evals+=("$eval_ms")
  echo "run $i: sheafctl process ${wall} ms, in the daemon ${eval_ms} ms ($summary)"
done
echo "median: sheafctl process $(printf '%s\n' "${walls[@]}" | median) ms," \
  "in the daemon $(printf '%s\n' "${evals[@]}" | median) ms"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# The same data and query in Debian's Prometheus on this machine, as the
# baseline of the same run: the fleet exported (sheaf-loadgen --export, the
# same seed and times), grouped by series into OpenMetrics, blocks made by
# promtool, the query timed over its HTTP API (curl's total time).
if command -v prometheus >/dev/null && command -v promtool >/dev/null && [ "${PEERS:-1}" = 1 ]; then
  start_ms=$($B/tools/sheafctl --addr "127.0.0.1:$gp" query 'node_load1{host="host-0001"}' --since 2h --format json |
    python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["samples"][0][0])')
  $B/tools/sheaf-loadgen --export "$work/fleet.prom" --start-ms "$start_ms" >/dev/null
  python3 - "$work/fleet.prom" "$work/fleet.om" <<'PY'
import sys
series = {}
for line in open(sys.argv[1]):
    labels, value, ts = line.rsplit(" ", 2)
    series.setdefault(labels, []).append((value, int(ts)))
by_name = {}
for labels in series:
    by_name.setdefault(labels.split("{", 1)[0], []).append(labels)
with open(sys.argv[2], "w") as out:
    for name, members in by_name.items():
        out.write("# TYPE %s unknown\n" % name)
        for labels in members:
            for value, ts in series[labels]:
                out.write("%s %s %d.%03d\n" % (labels, value, ts // 1000, ts % 1000))
    out.write("# EOF\n")
PY
  promtool tsdb create-blocks-from openmetrics "$work/fleet.om" "$work/prom" >/dev/null
  printf 'global:\n  scrape_interval: 1h\nscrape_configs: []\n' >"$work/prometheus.yml"
  pp=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  prometheus --config.file "$work/prometheus.yml" --storage.tsdb.path "$work/prom" \
    --web.listen-address "127.0.0.1:$pp" --storage.tsdb.retention.time 30d >"$work/prometheus.log" 2>&1 &
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$pp/-/ready" >/dev/null && break; sleep 0.1; done
  end_s=$(( $(date +%s) ))
  prom=()
  for i in $(seq "$RUNS"); do
    t=$(curl -s -o /dev/null -w '%{time_total}' --get "http://127.0.0.1:$pp/api/v1/query_range" \
      --data-urlencode "query=$query" --data-urlencode "start=$((end_s - 3600))" \
      --data-urlencode "end=$end_s" --data-urlencode "step=60")
    prom+=("$(awk -v t="$t" 'BEGIN {printf "%.1f", t * 1000}')")
  done
  echo "Prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}'), same data and query over HTTP:" \
    "median $(printf '%s\n' "${prom[@]}" | median) ms (runs: ${prom[*]})"
fi

if [ -x "$B/tests/bench/promql_bench" ]; then
  echo "the engine alone (CPU time is the evaluating thread's; process_cpu_ms counts the readers too):"
  "$B/tests/bench/promql_bench" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true 2>&1 |
    grep -E '_median|^Benchmark'
fi
