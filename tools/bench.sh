#!/usr/bin/env bash
# End-to-end ingest benchmark: sheaf-loadgen's default fleet (1000 hosts x
# 10 series x 360 points = 3.6M samples) into a fresh sheafd, then a full
# compaction (sheafctl compact) and the bytes on disk; RUNS times (default
# 3); prints each run and the medians. Also the wire size of the
# same data (every batch serialized and gzip-compressed as gRPC does).
#   bash tools/bench.sh            # RUNS=5 STREAMS=4 bash tools/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
bash deploy/build.sh >/dev/null
RUNS=${RUNS:-3}
STREAMS=${STREAMS:-4}
B=${BENCH_BUILD:-./build}  # another build tree (e.g. of an older commit) to compare
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

metric() {  # metric NAME PORT -> value from /metrics
  python3 - "$1" "$2" <<'PY'
import sys, urllib.request
name, port = sys.argv[1], sys.argv[2]
for line in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode().splitlines():
    if line.startswith(name + " "):
        print(line.split()[1]); break
PY
}

# The hour of data sits inside one 2-hour block window (the store's default),
# whatever the time of day: data crossing a window boundary is cut into two
# blocks per series and costs ~0.1 B/sample more, which made runs at
# different hours disagree. BENCH_START_MS overrides (e.g. to measure that).
start_ms=${BENCH_START_MS:-$(( ($(date +%s%3N) / 7200000 - 1) * 7200000 ))}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "wire format (dry run):"
$B/tools/sheaf-loadgen --dry-run --start-ms "$start_ms" | sed 's/^/  /'

rates=(); cpus=(); rss=(); disk=()
for i in $(seq "$RUNS"); do
  rm -rf "$work/data" "$work/ready"
  $B/daemon/sheafd --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --data-dir "$work/data" \
    --ready-file "$work/ready" --log-level warn &
  pid=$!
  for _ in $(seq 100); do [ -f "$work/ready" ] && break; sleep 0.1; done
  gp=$(sed -n 's/grpc_port=//p' "$work/ready"); hp=$(sed -n 's/http_port=//p' "$work/ready")
  out=$($B/tools/sheaf-loadgen --addr "127.0.0.1:$gp" --streams "$STREAMS" --start-ms "$start_ms")
  rate=$(echo "$out" | awk '/samples_per_second/{print $2}')
  acked=$(echo "$out" | awk '/samples_acked/{print $2}')
  cpu=$(metric process_cpu_seconds_total "$hp")
  peak=$(metric process_resident_memory_max_bytes "$hp")
  # Everything into blocks and fully compacted: the bytes a fleet costs at rest.
  $B/tools/sheafctl --addr "127.0.0.1:$gp" --timeout 30m compact >/dev/null
  stats=$($B/tools/sheafctl --addr "127.0.0.1:$gp" stats --format json)
  bytes=$(echo "$stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["storage_bytes"])')
  sample_bytes=$(echo "$stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["column_family_bytes"].get("samples", 0))')
  kill -TERM "$pid"; wait "$pid" || true
  echo "run $i: acked=$acked samples/s=$rate sheafd_cpu_s=$cpu sheafd_peak_rss_MiB=$((${peak%.*} / 1048576))" \
       "store_bytes=$bytes ($(python3 -c "print(round($bytes/3600000, 3))") B/sample; samples CF $(python3 -c "print(round($sample_bytes/3600000, 3))") B/sample)"
  rates+=("$rate"); cpus+=("$cpu"); rss+=("${peak%.*}"); disk+=("$bytes")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m_rate=$(median "${rates[@]}"); m_cpu=$(median "${cpus[@]}")
echo "median: samples/s=$m_rate sheafd_cpu_s=$m_cpu samples_per_sheafd_cpu_s=$(python3 -c "print(round(3600000/$m_cpu))")" \
     "peak_rss_MiB=$(( $(median "${rss[@]}") / 1048576 )) store_bytes=$(median "${disk[@]}")" \
     "bytes_per_sample=$(python3 -c "print(round($(median "${disk[@]}")/3600000, 3))")"
