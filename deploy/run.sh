#!/usr/bin/env bash
# Runs sheaf on this machine: installs what is missing, builds, starts
# sheafd (store in ./data) and one sheaf-agent shipping this host's metrics,
# and prints where to look. Ctrl-C stops both gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
bash deploy/build.sh

GRPC=${SHEAF_GRPC_LISTEN:-127.0.0.1:7470}
HTTP=${SHEAF_HTTP_LISTEN:-127.0.0.1:9470}
mkdir -p data
rm -f data/.ready

# setsid: Ctrl-C reaches only this script, whose trap stops the agent
# first (so its last batches are acknowledged), then the daemon.
setsid ./build/daemon/sheafd --grpc-listen "$GRPC" --http-listen "$HTTP" --data-dir ./data --ready-file data/.ready &
daemon_pid=$!
agent_pid=""
stop() {
  [ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
  kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM

for _ in $(seq 100); do
  [ -f data/.ready ] && break
  kill -0 "$daemon_pid" 2>/dev/null || { echo "sheafd did not start (see its message above)"; exit 1; }
  sleep 0.1
done
[ -f data/.ready ] || { echo "sheafd did not become ready in 10 s"; stop; exit 1; }

# The agent's identity and batch sequences live in its state directory,
# next to the store: keep them together, and never copy them to another host.
setsid ./build/agent/sheaf-agent --daemon "$GRPC" --interval 10s --stream-max-age 10s --state-dir ./data/agent-state &
agent_pid=$!

cat <<TXT

sheaf is running (Ctrl-C stops it).
  gRPC:     $GRPC
  metrics:  http://$HTTP/metrics
  data:     $(pwd)/data
  agent:    $(pwd)/data/agent-state (its identity and batch sequences)

Query this host's load, as it arrives (first samples within ~10 s):
  ./build/tools/sheafctl --addr $GRPC query 'node_load1' --since 15m
  ./build/tools/sheafctl --addr $GRPC series '{__name__=~"node_cpu.*", mode="idle"}'
  ./build/tools/sheafctl --addr $GRPC stats

TXT
wait "$daemon_pid"
