#!/usr/bin/env bash
# Configures (once) and builds sheaf into ./build. Incremental after the
# first run.
set -euo pipefail
cd "$(dirname "$0")/.."
# meson compiles through ccache when it is installed (deploy/setup.sh):
# paths relative to the checkout and the directory left out of the hash, so
# a fresh clone elsewhere (CI) reuses what any earlier build compiled.
source deploy/ccache.sh
if [ ! -f build/build.ninja ]; then
  meson setup build >/dev/null
fi
# Two jobs: every file that includes gRPC takes 7-13 s and ~1 GB to compile.
ninja -C build -j "${SHEAF_BUILD_JOBS:-2}"
