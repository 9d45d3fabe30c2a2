#!/usr/bin/env bash
# sheafd's memory per distinct agent id (docs/RELIABILITY.md, "Bounded
# per-agent memory"): AGENTS one-batch agents (default 10,000: RUNS
# sheaf-loadgen runs of 100 streams, each stream an agent with its own
# id, each run the same 100 series, one sample per series) into a fresh
# sheafd. Prints VmRSS empty, every REPORT agents (with the store's
# figures that are not per agent: memtables, head samples, so the growth
# can be told apart from RocksDB's write buffer filling up), and after a
# restart on the same data.
#   bash tools/bench_agent_memory.sh [SHEAFD FLAGS...]
#   AGENTS=120000 REPORT=20000 SHEAFD=/tmp/old-sheafd bash tools/bench_agent_memory.sh
# BENCH_BUILD: the build directory (default ./build); SHEAFD: another
# sheafd binary to measure (e.g. an older one, for a before/after);
# arguments go to sheafd (e.g. --max-cached-agent-sets 10000). ~0.13 s
# per 100 agents on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BENCH_BUILD:-./build}
SHEAFD=${SHEAFD:-$B/daemon/sheafd}
AGENTS=${AGENTS:-10000}
STREAMS=100
RUNS=$((AGENTS / STREAMS))
REPORT=${REPORT:-$((RUNS / 4 > 0 ? RUNS / 4 * STREAMS : STREAMS))}  # print every REPORT agents
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "sheafd: $SHEAFD $*; agents: $AGENTS ($RUNS runs of $STREAMS one-batch agents)"
start() {
  rm -f "$work/ready"
  "$SHEAFD" --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --data-dir "$work/data" \
    --ready-file "$work/ready" --log-level warn "$@" &
  pid=$!
  for _ in $(seq 300); do [ -f "$work/ready" ] && break; sleep 0.1; done
  gp=$(sed -n 's/grpc_port=//p' "$work/ready")
  hp=$(sed -n 's/http_port=//p' "$work/ready")
}
start "$@"
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status"; }
stats() {
  $B/tools/sheafctl --addr "127.0.0.1:$gp" stats | awk '/^(agents|series|head_samples) / {printf "%s %s  ", $1, $2}'
  curl -s "http://127.0.0.1:$hp/metrics" |
    awk '/^sheaf_storage_memtable_bytes / {printf "memtables %.1f MiB  ", $2 / 1048576}'
}
empty=$(rss)
echo "empty: $empty MiB"
for run in $(seq 1 "$RUNS"); do
  $B/tools/sheaf-loadgen --addr "127.0.0.1:$gp" --hosts $STREAMS --streams $STREAMS --series-per-host 1 \
    --points 1 --agent-prefix "run$run" >/dev/null
  if [ $((run * STREAMS % REPORT)) -eq 0 ]; then
    echo "after $((run * STREAMS)) agents: $(rss) MiB  $(stats)"
  fi
done
full=$(rss)
awk -v a="$empty" -v b="$full" -v n="$AGENTS" \
  'BEGIN {printf "growth: %.1f MiB, %.0f bytes per agent id\n", b - a, (b - a) * 1048576 / n}'
kill "$pid"; wait "$pid" || true
start "$@"
sleep 2
echo "restarted on the same data: $(rss) MiB  $(stats)"
