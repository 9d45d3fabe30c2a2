#!/usr/bin/env bash
# The same fleet (sheaf-loadgen's default: 3.6M samples) into
# VictoriaMetrics (Debian's victoria-metrics), on this machine: bytes on disk
# after a forced merge and VictoriaMetrics' CPU seconds for the import.
# Compare with tools/bench.sh's figures for sheafd.
#   bash tools/bench_vs_victoriametrics.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
if ! command -v victoria-metrics >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends victoria-metrics >/dev/null
fi
bash deploy/build.sh >/dev/null
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
./build/tools/sheaf-loadgen --export "$work/fleet.prom" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
victoria-metrics -storageDataPath="$work/vm" -httpListenAddr="127.0.0.1:$port" -retentionPeriod=100y >"$work/vm.log" 2>&1 &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
curl -sf --data-binary @"$work/fleet.prom" "http://127.0.0.1:$port/api/v1/import/prometheus"
curl -sf "http://127.0.0.1:$port/internal/force_flush"
curl -sf "http://127.0.0.1:$port/internal/force_merge"
# Wait until the row count settles and merges are done.
for _ in $(seq 120); do
  rows=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^vm_rows\{type="storage\/(small|big)"\}/{s+=$2} END{print s+0}')
  active=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^vm_active_merges\{type="storage/{s+=$2} END{print s+0}')
  [ "$rows" = 3600000 ] && [ "$active" = 0 ] && break
  sleep 1
done
cpu=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^process_cpu_seconds_total/{print $2}')
bytes=$(du -sb "$work/vm" | cut -f1)
echo "victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics)"
echo "rows=$rows disk_bytes=$bytes bytes_per_sample=$(python3 -c "print(round($bytes/3600000, 3))") import_cpu_s=$cpu samples_per_cpu_s=$(python3 -c "print(round(3600000/$cpu))")"
