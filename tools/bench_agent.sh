#!/usr/bin/env bash
# sheaf-agent's footprint on a host (issue 8), end to end, with real
# processes on loopback:
#
#   phase 1  a fresh sheafd (temp data dir, free ports) and one sheaf-agent
#            with the default collectors at a 10 s interval (temp state dir);
#            after WARMUP seconds, the agent's CPU time (/proc/PID/stat
#            utime + stime) over DURATION seconds as a percentage of one
#            core, and its RSS (/proc/PID/status VmRSS) every SAMPLE_EVERY
#            seconds: min, median, max.
#   phase 2  sheafd stopped for AWAY seconds: the agent's RSS and the size
#            of its spool directory every SAMPLE_EVERY seconds (RSS should
#            stay flat while the spool grows), and its CPU.
#   drain    sheafd started again (same data, same port): how long until the
#            daemon holds every interval of the run — node_load1 of the agent
#            read back with sheafctl, no gap longer than 1.5 intervals and no
#            duplicate timestamp from the first collection to now — and the
#            agent's spool (its /metrics when METRICS=1) has nothing waiting.
#
# The machine (cores, memory, CPU model) and the load average before and
# after are printed: a busy machine inflates CPU figures.
#
#   bash tools/bench_agent.sh                      # 10 + 10 minutes, as the issue asks
#   DURATION=120 AWAY=120 bash tools/bench_agent.sh  # a quick run
#
# Settings (environment): DURATION (600 s), AWAY (600 s), INTERVAL (10s),
# WARMUP (20 s: start-up is not the steady state), SAMPLE_EVERY (10 s),
# DRAIN_TIMEOUT (600 s), METRICS (0; 1 runs the agent with --metrics-listen
# on loopback and reads its spool figures from /metrics), BENCH_BUILD (a
# build directory of your own: only sheafd, sheaf-agent and sheafctl are
# built there, with ninja; default: deploy/build.sh into ./build).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
AWAY=${AWAY:-600}
INTERVAL=${INTERVAL:-10s}
WARMUP=${WARMUP:-20}
SAMPLE_EVERY=${SAMPLE_EVERY:-10}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-600}
METRICS=${METRICS:-0}

bash deploy/setup.sh
if [ -n "${BENCH_BUILD:-}" ]; then
  B=$BENCH_BUILD
  ninja -C "$B" -j "${SHEAF_BUILD_JOBS:-2}" daemon/sheafd agent/sheaf-agent tools/sheafctl >/dev/null
else
  bash deploy/build.sh >/dev/null
  B=./build
fi
work=$(mktemp -d)
daemon_pid=
agent_pid=
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# "min / median / max" in MiB of the KiB figures in file $1.
spread_mib() {
  sort -n "$1" | awk '{a[NR] = $1 / 1024} END {m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2;
    printf "%.1f / %.1f / %.1f", a[1], m, a[NR]}'
}
# KiB figures on stdin, in MiB, on one line.
mib() { awk '{printf "%s%.1f", (NR > 1) ? " " : "", $1 / 1024}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
seconds() { # "10s", "1m", "500ms" -> seconds (awk float)
  awk -v d="$1" 'BEGIN { n = d + 0; u = d; sub(/^[0-9.]+/, "", u);
    print (u == "ms") ? n / 1000 : (u == "m") ? n * 60 : (u == "h") ? n * 3600 : n }'
}
# The agent's CPU time so far, in clock ticks (utime + stime: fields 14 and
# 15 of /proc/PID/stat, counted after the ") " that ends the command name).
cpu_ticks() { sed 's/.*) //' "/proc/$agent_pid/stat" | awk '{print $12 + $13}'; }
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$agent_pid/status"; }
alive() { kill -0 "$agent_pid" 2>/dev/null || { echo "sheaf-agent exited; its log:"; tail -20 "$work/agent.log"; exit 1; }; }
du_bytes() { du -sb "$1" 2>/dev/null | cut -f1 || echo 0; }
ticks_per_second=$(getconf CLK_TCK)
interval_s=$(seconds "$INTERVAL")

start_daemon() {
  rm -f "$work/ready"
  "$B/daemon/sheafd" --grpc-listen "127.0.0.1:$gp" --http-listen 127.0.0.1:0 --data-dir "$work/data" \
    --ready-file "$work/ready" --log-level warn >>"$work/sheafd.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 300); do [ -f "$work/ready" ] && return 0; sleep 0.1; done
  echo "sheafd did not start within 30 s; its log:"
  tail -20 "$work/sheafd.log"
  exit 1
}
stop_daemon() {
  kill "$daemon_pid"
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=
}

# RSS (KiB) and spool bytes every SAMPLE_EVERY seconds for $1 seconds,
# appended to $work/rss.$2 and $work/spool.$2.
sample_for() {
  local until=$(($(date +%s) + $1))
  while [ "$(date +%s)" -lt "$until" ]; do
    alive
    rss_kib >>"$work/rss.$2"
    du_bytes "$spool_dir" >>"$work/spool.$2"
    sleep "$SAMPLE_EVERY"
  done
}
# Percent of one core the agent used between two cpu_ticks readings $3 s apart.
cpu_percent() { awk -v a="$1" -v b="$2" -v s="$3" -v t="$ticks_per_second" 'BEGIN {printf "%.3f", (b - a) / t / s * 100}'; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "settings: DURATION=${DURATION}s AWAY=${AWAY}s INTERVAL=$INTERVAL WARMUP=${WARMUP}s SAMPLE_EVERY=${SAMPLE_EVERY}s METRICS=$METRICS"

gp=$(free_port)
start_daemon
agent_args=(--daemon "127.0.0.1:$gp" --interval "$INTERVAL" --state-dir "$work/state" --log-level info)
spool_dir="$work/state/spool"  # the default, <state-dir>/spool
mp=
if [ "$METRICS" = 1 ]; then
  mp=$(free_port)
  agent_args+=(--metrics-listen "127.0.0.1:$mp")
fi
echo "sheaf-agent ${agent_args[*]}"
"$B/agent/sheaf-agent" "${agent_args[@]}" >"$work/agent.log" 2>&1 &
agent_pid=$!
agent_start_ms=$(($(date +%s%N) / 1000000))
metric() { curl -sf "http://127.0.0.1:$mp/metrics" | awk -v n="$1" '$1 == n {print $2}'; }

# Samples phase $1 for $2 seconds; sets phase_s (seconds it took) and
# phase_cpu (% of one core) and prints the CPU and RSS lines.
measure() {
  local t0 c0 c1 t1
  t0=$(date +%s.%N)
  c0=$(cpu_ticks)
  sample_for "$2" "$1"
  c1=$(cpu_ticks)
  t1=$(date +%s.%N)
  phase_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
  echo "  CPU: $(cpu_percent "$c0" "$c1" "$phase_s") % of one core on average ($((c1 - c0)) ticks in ${phase_s%.*} s)"
  echo "  RSS min / median / max: $(spread_mib "$work/rss.$1") MiB ($(wc -l <"$work/rss.$1") samples);" \
    "first $(head -1 "$work/rss.$1" | mib), last $(tail -1 "$work/rss.$1" | mib) MiB"
}

# Phase 1: the steady state with the daemon up.
sleep "$WARMUP"
alive
echo "phase 1, daemon up, ${DURATION} s after ${WARMUP} s of warm-up:"
measure up "$DURATION"

# Phase 2: the daemon away.
stop_daemon
echo "phase 2, daemon away for ${AWAY} s:"
measure away "$AWAY"
away_s=$phase_s
spool_first=$(head -1 "$work/spool.away")
spool_last=$(tail -1 "$work/spool.away")
echo "  spool: $spool_first bytes at the start, $spool_last at the end," \
  "$(awk -v a="$spool_first" -v b="$spool_last" -v s="$away_s" 'BEGIN {printf "%.1f", (b - a) / 1024 / s * 60}') KiB/min" \
  "($(wc -l <"$work/spool.away") samples: $(paste -sd' ' "$work/spool.away"))"
echo "  RSS every ${SAMPLE_EVERY} s (MiB): $(mib <"$work/rss.away")"

# Drain: the daemon back; wait until it holds every interval of the run.
start_daemon
drain_start=$(date +%s.%N)
c4=$(cpu_ticks)
# Prints "samples max_gap_s duplicates first_ms last_ms" of node_load1.
coverage() {
  "$B/tools/sheafctl" --addr "127.0.0.1:$gp" query node_load1 --start "$agent_start_ms" --format json 2>/dev/null |
    python3 -c '
import json, sys
ts = sorted(t for line in sys.stdin if line.strip() for t, _ in json.loads(line)["samples"])
gaps = [b - a for a, b in zip(ts, ts[1:])]
print(len(ts), max(gaps, default=0) / 1000, sum(1 for g in gaps if g == 0), ts[0] if ts else 0, ts[-1] if ts else 0)'
}
drained=0
deadline=$(($(date +%s) + DRAIN_TIMEOUT))
while [ "$(date +%s)" -lt "$deadline" ]; do
  alive
  read -r n gap dups first last < <(coverage || echo "0 0 0 0 0")
  now_ms=$(($(date +%s%N) / 1000000))
  # Covered: from the agent's start (its first collection) to within two
  # intervals of now, no gap above 1.5 intervals, no duplicate; and nothing
  # waits in the spool.
  if [ "$n" -gt 0 ] && [ "$dups" = 0 ] &&
    awk -v g="$gap" -v i="$interval_s" -v f="$first" -v l="$last" -v s="$agent_start_ms" -v now="$now_ms" \
      'BEGIN {exit !(g <= 1.5 * i && f - s <= 1000 * i + 5000 && now - l <= 2000 * i)}'; then
    waiting=0
    if [ -n "$mp" ]; then
      waiting=$(metric sheaf_agent_spool_batches_unacked || true)
      if [ -z "$waiting" ]; then
        echo "  (no answer from the agent's /metrics on port $mp: the drain is judged by the daemon's data alone)"
        mp=
        waiting=0
      fi
    fi
    if [ "$waiting" = 0 ]; then
      drained=1
      break
    fi
  fi
  sleep 2
done
drain_end=$(date +%s.%N)
c5=$(cpu_ticks)
drain_s=$(awk -v a="$drain_start" -v b="$drain_end" 'BEGIN {printf "%.0f", b - a}')
if [ "$drained" = 1 ]; then
  echo "drain: the daemon holds every interval of the run ${drain_s} s after it came back:" \
    "$n samples of node_load1, largest gap ${gap} s, $dups duplicate timestamps;" \
    "agent CPU during the drain $(cpu_percent "$c4" "$c5" "$drain_s") % of one core"
else
  echo "drain: NOT complete after ${DRAIN_TIMEOUT} s: $n samples of node_load1, largest gap ${gap} s," \
    "$dups duplicate timestamps"
fi
echo "  spool after the drain: $(du_bytes "$spool_dir") bytes; agent RSS $(rss_kib | mib) MiB"
if [ -n "$mp" ]; then
  echo "  agent /metrics: $(curl -sf "http://127.0.0.1:$mp/metrics" | grep -E \
    '^sheaf_agent_(samples_acked_total|spool_bytes|spool_batches_unacked|reconnects_total|samples_dropped_total)' |
    paste -sd' ')"
fi
summary=$(grep -E 'acknowledged up to' "$work/agent.log" | tail -1 | cut -c1-400 || true)
[ -n "$summary" ] && echo "  the agent's last summary: $summary"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$drained" = 1 ]
