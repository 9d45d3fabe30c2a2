#!/usr/bin/env bash
# Disk bytes of raw samples and of each rollup resolution, for sizing
# (docs/OPERATIONS.md): a day of sheaf-loadgen's fleet (100 hosts x 10
# series every 10 s = 8.64M samples) written 4 days in the past — older
# than --downsample-after (2d), so its 1m and 1h rollup windows are
# written with it — into a fresh sheafd with the default --rollups, then
# `sheafctl compact` and the bytes per column family: B/sample for raw,
# B/window for each resolution.
#   bash tools/bench_rollup_bytes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
bash deploy/build.sh >/dev/null
B=${BENCH_BUILD:-./build}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
$B/daemon/sheafd --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --data-dir "$work/data" \
  --ready-file "$work/ready" --log-level warn &
for _ in $(seq 100); do [ -f "$work/ready" ] && break; sleep 0.1; done
gp=$(sed -n 's/grpc_port=//p' "$work/ready")
day=86400000
start=$(( ($(date +%s%3N) - 4 * day) / day * day ))
$B/tools/sheaf-loadgen --addr "127.0.0.1:$gp" --hosts 100 --points 8640 --start-ms "$start" | grep samples_acked
$B/tools/sheafctl --addr "127.0.0.1:$gp" compact >/dev/null
$B/tools/sheafctl --addr "127.0.0.1:$gp" stats --format json | python3 -c '
import json, sys
st = json.load(sys.stdin)
cf = st["column_family_bytes"]
series, samples = st["series"], st["samples"]
raw = cf["samples"]
print(f"raw samples: {raw:,} bytes, {raw / samples:.2f} B/sample")
for res, per_day in (("60000", 1440), ("3600000", 24)):
    windows = series * per_day
    b = cf["rollup_" + res]
    print(f"rollup {int(res) // 1000}s: {b:,} bytes, {windows:,} windows, {b / windows:.2f} B/window")
index = cf["index"]
print(f"index: {index:,} bytes for {series} series")'
