#!/usr/bin/env bash
# Why sheafd's HTTP server is civetweb (docs/ARCHITECTURE.md): the same
# 9.5 KB /metrics answer served by sheafd's HttpServer (civetweb) and by
# cpp-httplib (Debian's libcpp-httplib-dev, installed here), each with 16
# workers and 5 s request/idle timeouts, alternating, RUNS times (default
# 5):
#   - `ab -n 5000 -c 4`, without and with keep-alive (-k): requests/s;
#   - N idle sockets held open (nothing sent), then the time of one GET:
#     how many idle clients it takes to delay a scrape, and by how much.
# Prints every run and the medians.
#   bash tools/bench_http_servers.sh        # RUNS=9 bash tools/bench_http_servers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
dpkg-query -W -f='${Status}' libcpp-httplib-dev apache2-utils 2>/dev/null | grep -c "install ok installed" | grep -q 2 ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libcpp-httplib-dev apache2-utils >/dev/null
B=${BENCH_BUILD:-./build}
[ -f "$B/build.ninja" ] || bash deploy/build.sh >/dev/null
meson setup --reconfigure "$B" >/dev/null  # finds cpp-httplib
ninja -C "$B" -j "${SHEAF_BUILD_JOBS:-2}" tests/bench/http_servers_compare >/dev/null
RUNS=${RUNS:-5}
bin="$B/tests/bench/http_servers_compare"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
serve() {
  port=$(free_port)  # a fresh one each time: the last server's port may be in TIME_WAIT
  "$bin" "$1" "$port" 9500 16 &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/metrics" -o /dev/null && return; sleep 0.05; done
  echo "$1 did not start" >&2
  exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
rps() { ab "$@" "http://127.0.0.1:$port/metrics" 2>/dev/null | awk '/Requests per second/ {print $4}'; }
# Opens $1 idle connections, waits until the server has accepted them,
# times one GET, closes them. Seconds.
idle_get() {
  python3 - "$port" "$1" <<'PY'
import socket, sys, time, urllib.request
port, n = int(sys.argv[1]), int(sys.argv[2])
idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
time.sleep(0.3)
t = time.monotonic()
urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60).read()
print(f"{time.monotonic() - t:.3f}")
for s in idle: s.close()
PY
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A results
for run in $(seq "$RUNS"); do
  for server in civetweb httplib; do
    serve "$server"
    close=$(rps -n 5000 -c 4)
    keepalive=$(rps -k -n 5000 -c 4)
    stop
    results[$server.close]+="$close "
    results[$server.keepalive]+="$keepalive "
    echo "run $run $server: $close requests/s, keep-alive $keepalive"
  done
done
for server in civetweb httplib; do
  serve "$server"
  for n in 15 16 48; do
    results[$server.idle$n]="$(idle_get "$n")"
  done
  stop
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '\n| | civetweb (sheafd) | cpp-httplib |\n|---|---|---|\n'
for k in close keepalive; do
  printf '| ab -n 5000 -c 4 %s, requests/s (median of %d) | %s | %s |\n' "$k" "$RUNS" \
    "$(tr ' ' '\n' <<<"${results[civetweb.$k]}" | grep . | median)" "$(tr ' ' '\n' <<<"${results[httplib.$k]}" | grep . | median)"
done
for n in 15 16 48; do
  printf '| one GET with %d idle sockets open, s | %s | %s |\n' "$n" "${results[civetweb.idle$n]}" "${results[httplib.idle$n]}"
done
