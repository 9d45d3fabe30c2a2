#!/usr/bin/env bash
# sheafd's memory per series, for sizing (docs/OPERATIONS.md): SERIES
# series (default 1,000,000: sheaf-loadgen hosts x 10 series, 3 points
# each, 64 Push streams) into a fresh sheafd; prints VmRSS empty, after the
# load (streams closed), after `sheafctl compact`, and after a restart on
# the same data once it has been idle for 10 s (the steady state: what a
# long-running sheafd holding that many series needs).
#   bash tools/bench_series_memory.sh     # SERIES=2000000 bash tools/bench_series_memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
bash deploy/build.sh >/dev/null
SERIES=${SERIES:-1000000}
B=${BENCH_BUILD:-./build}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
start() {
  rm -f "$work/ready"
  # Room for every stream's series definitions at once: the default
  # (512 MiB for all streams) is sized for fleets of agents with thousands
  # of series each, not 64 streams defining a million.
  $B/daemon/sheafd --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --data-dir "$work/data" \
    --max-series $((SERIES * 2)) --max-dictionary-bytes $((4 << 30)) --ready-file "$work/ready" --log-level warn &
  pid=$!
  for _ in $(seq 300); do [ -f "$work/ready" ] && break; sleep 0.1; done
  gp=$(sed -n 's/grpc_port=//p' "$work/ready")
}
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2 / 1024}' "/proc/$pid/status"; }
start
echo "empty: $(rss)"
$B/tools/sheaf-loadgen --addr "127.0.0.1:$gp" --hosts $((SERIES / 10)) --series-per-host 10 --points 3 \
  --interval 60s --streams 64 | grep -E 'samples_acked' | sed 's/^/loadgen: /'
echo "after the load: $(rss)"
$B/tools/sheafctl --addr "127.0.0.1:$gp" stats | grep -E '^(series|samples|storage_bytes) '
$B/tools/sheafctl --addr "127.0.0.1:$gp" compact >/dev/null
echo "after compaction: $(rss)"
kill "$pid"; wait "$pid" || true
start
sleep 10
echo "restarted, idle 10 s: $(rss)"
