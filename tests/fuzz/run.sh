#!/usr/bin/env bash
# Runs the libFuzzer targets of a -Dfuzz=true tree, one at a time, each for
# a bounded time on a copy of its corpus (tests/corpus/<target>/, which it
# never writes), and fails on the first crash, leak, timeout or
# out-of-memory, printing the reproducer's path. Used by
# deploy/test-sanitizers.sh (phase 4) and by hand (docs/DEVELOPING.md,
# "Fuzzing"):
#
#   bash tests/fuzz/run.sh [--setup] BUILD_DIR [SECONDS [TARGET...]]
#
# --setup: first configure BUILD_DIR (clang++-14, through ccache when it
# is installed, ASan + UBSan, -Dfuzz=true) if it is not configured yet, and
# build the targets (SHEAF_BUILD_JOBS at once, default 2).
# SECONDS: per target (default $FUZZ_SECONDS, else 20). TARGETs: names as
# in tests/corpus (default: all). New inputs the fuzzer finds stay in the
# temp copy and are thrown away; a crash's input is kept in
# $FUZZ_ARTIFACTS (default: /tmp/sheaf-fuzz-artifacts) for a regression.
set -euo pipefail
cd "$(dirname "$0")/../.."
setup=false
if [ "${1:-}" = "--setup" ]; then
  setup=true
  shift
fi
build="${1:?usage: run.sh [--setup] BUILD_DIR [SECONDS [TARGET...]]}"
seconds="${2:-${FUZZ_SECONDS:-20}}"
shift $(($# < 2 ? $# : 2))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for d in tests/corpus/*/; do targets+=("$(basename "$d")"); done
fi
if $setup; then
  if [ ! -f "$build/build.ninja" ]; then
    # meson picks ccache up by itself only for the default compiler.
    cxx=clang++-14
    if command -v ccache >/dev/null; then cxx="ccache clang++-14"; fi
    CXX="$cxx" meson setup "$build" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
      -Dtests=false -Dbenchmarks=false >/dev/null
  fi
  ninja -C "$build" build.ninja >/dev/null  # picks up changed meson.build files first
  ninja -C "$build" -j "${SHEAF_BUILD_JOBS:-2}" "${targets[@]/#/tests/fuzz/fuzz_}"
fi
artifacts="${FUZZ_ARTIFACTS:-/tmp/sheaf-fuzz-artifacts}"
mkdir -p "$artifacts"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Leaks are crashes too; a UBSan report stops the target (as in the tests).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}"

failed=()
for t in "${targets[@]}"; do
  exe="$build/tests/fuzz/fuzz_$t"
  if [ ! -x "$exe" ]; then
    echo "fuzz $t: $exe is missing (build it: ninja -C $build tests/fuzz/fuzz_$t)" >&2
    failed+=("$t")
    continue
  fi
  mkdir -p "$work/$t"
  cp -r "tests/corpus/$t/." "$work/$t/"
  dict=()
  if [ -f "tests/corpus/$t.dict" ]; then dict=("-dict=tests/corpus/$t.dict"); fi
  log="$work/$t.log"
  set +e
  "$exe" "$work/$t" "${dict[@]}" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/$t-" >"$log" 2>&1
  rc=$?
  set -e
  # The last status line has the coverage (cov: edges, ft: features, corp: inputs).
  stats="$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [^ ]+' || true)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  echo "fuzz $t: ${seconds} s, ${execs:-?} runs, ${rate:-?}/s, ${stats:-no status line}"
  if [ "$rc" -ne 0 ]; then
    echo "fuzz $t: FAILED (exit $rc); the last lines of its log:" >&2
    tail -40 "$log" >&2
    grep -E 'Test unit written to|artifact_prefix' "$log" | sed "s|^|fuzz $t: reproducer: |" >&2 || true
    echo "fuzz $t: replay with: $exe <reproducer>; keep it as tests/corpus/$t/<name> (docs/DEVELOPING.md)" >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing: ${#targets[@]} targets clean"
