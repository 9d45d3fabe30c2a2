#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test.
# With --sanitizers: the tests under ASan+UBSan and TSan instead
# (deploy/test-sanitizers.sh, docs/DEVELOPING.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--sanitizers" ]; then
  exec bash deploy/test-sanitizers.sh
elif [ $# -gt 0 ]; then
  echo "usage: bash deploy/test.sh [--sanitizers]" >&2
  exit 2
fi
bash deploy/setup.sh
bash deploy/build.sh
set +e
meson test -C build --print-errorlogs --num-processes 2 2>&1 | tee build/test-output.txt
rc=${PIPESTATUS[0]}
set -e
ok=$(grep -E '^Ok:' build/test-output.txt | awk '{print $2}')
fail=$(grep -E '^Fail:' build/test-output.txt | awk '{print $2}')
timeout=$(grep -E '^Timeout:' build/test-output.txt | awk '{print $2}')
echo "${ok:-0} passed, $(( ${fail:-0} + ${timeout:-0} )) failed"
exit "$rc"
