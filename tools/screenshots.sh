#!/usr/bin/env bash
# Screenshots of the web console's pages at 1280x800 into docs/images/
# (console-graph.png, -series, -agents, -status, -tail): a fresh sheafd
# with 30 minutes of sheaf-loadgen data (100 hosts in 6 regions, 4 agents),
# photographed by Debian's headless chromium. Nothing outside sheafd is
# loaded (chromium resolves no other host).
#   bash tools/screenshots.sh                 # SCREENSHOT_BUILD=./build-x bash tools/screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=${SCREENSHOT_BUILD:-./build}
if [ -z "${SCREENSHOT_BUILD:-}" ]; then
  bash deploy/setup.sh
  bash deploy/build.sh >/dev/null
fi
out=docs/images
mkdir -p "$out"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

$B/daemon/sheafd --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --data-dir "$work/data" \
  --ready-file "$work/ready" --wal-sync=false --log-level warn &
for _ in $(seq 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
gp=$(sed -n 's/.*grpc_port=\([0-9]*\).*/\1/p' "$work/ready" | head -1)
hp=$(sed -n 's/.*http_port=\([0-9]*\).*/\1/p' "$work/ready" | head -1)
$B/tools/sheaf-loadgen --addr "127.0.0.1:$gp" --hosts 100 --series-per-host 10 --points 180 --streams 4 >/dev/null

# Through the DevTools protocol (the browser test's Browser class), since
# chromium's own --screenshot never fires while /tail's stream is open.
export SHEAFD=$B/daemon/sheafd SHEAFCTL=$B/tools/sheafctl SHEAF_LOADGEN=$B/tools/sheaf-loadgen
# The tail shows what arrives while it is open: a loadgen pushes meanwhile.
( sleep 4
  for i in 1 2 3 4 5 6; do
    $B/tools/sheaf-loadgen --addr "127.0.0.1:$gp" --hosts 20 --series-per-host 10 --points 1 --streams 1 \
      --agent-prefix "live$i" >/dev/null
    sleep 0.5
  done ) &
/usr/bin/python3 - "$work" "http://127.0.0.1:$hp" "$out" <<'PY'
import base64, os, sys, time
sys.path.insert(0, "tests/e2e")
from console_browser_test import Browser
work, base, out = sys.argv[1:]
browser = Browser(work, [])
browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=800, deviceScaleFactor=1, mobile=False)
pages = [("graph", "/graph?expr=sum%20by%20(region)%20(rate(node_cpu_seconds_total%5B1m%5D))&range=30m", 2),
         ("series", "/series", 1.5), ("agents", "/agents", 1), ("status", "/status", 1),
         ("tail", "/tail?match=node_load1", 4)]
for name, path, seconds in pages:
    browser.open(base + path)
    time.sleep(seconds)
    png = browser.call("Page.captureScreenshot", format="png")["data"]
    with open(os.path.join(out, "console-%s.png" % name), "wb") as f:
        f.write(base64.b64decode(png))
    print(os.path.join(out, "console-%s.png" % name))
browser.close()
browser.proc.wait(timeout=20)
PY
