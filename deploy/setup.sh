#!/usr/bin/env bash
# Installs what sheaf needs to build, test and run, from Debian 12's
# packages. Idempotent and fast when everything is there: apt is only
# touched if a package is missing. Run as root (or with sudo).
set -euo pipefail

PACKAGES=(
  # build
  meson ninja-build pkg-config g++
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  prometheus-cpp-dev librocksdb-dev libfmt-dev libyaml-cpp-dev libre2-dev libabsl-dev zlib1g-dev
  libcivetweb-dev   # sheafd's HTTP server (also under prometheus-cpp-dev)
  libsnappy-dev     # Prometheus remote write: snappy-compressed bodies
  libssl-dev        # TLS: sheafd checks and serves its certificates (daemon/tls.cc), token digests
  libjs-chart.js    # the web console's chart, embedded into sheafd at build time (before meson configures)
  ccache            # rebuilds of unchanged files come from its cache (deploy/build.sh sets it up)
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev python3
  python3-h2   # a raw HTTP/2 client for the hostile-input tests
  openssl      # the TLS tests make throwaway CAs and certificates at test time
  prometheus   # promtool, and a real Prometheus that scrapes sheafd in the tests
  prometheus-node-exporter   # the agent's collectors are compared with it, and scraped
  etcd-server  # discovery of daemons through etcd, tested against the real one
  victoria-metrics  # a remote-write receiver that sheafd's sender is tested against
  libcurl4-openssl-dev   # the agent scrapes local /metrics endpoints
  python3-yaml   # tests/deploy: parses everything under deploy/
  systemd        # tests/deploy: systemd-analyze verify/security on deploy/systemd/
  chromium python3-websocket   # the web console tested in a headless browser over the DevTools protocol
)
# Only with --sanitizers (deploy/test.sh --sanitizers): clang for the
# -Wthread-safety build of the store, and clang's sanitizer runtimes with
# libFuzzer for tests/fuzz (only recommended by clang-14, so not installed
# with --no-install-recommends). GCC's ASan, UBSan and TSan runtimes come
# with g++.
SANITIZER_PACKAGES=(clang-14 libclang-rt-14-dev)
if [ "${1:-}" = "--sanitizers" ]; then
  PACKAGES+=("${SANITIZER_PACKAGES[@]}")
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
