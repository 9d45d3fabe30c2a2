#!/usr/bin/env bash
# `bash deploy/test.sh --sanitizers`: the tests again under sanitizers, in
# trees of their own, each configured once and then built incrementally:
#
#  1. build-asan   AddressSanitizer + UndefinedBehaviorSanitizer (leaks
#                  included): every suite (no benchmarks).
#  2. build-tsan   ThreadSanitizer: the storage and promql suites
#                  (store_concurrency_test and the engine's parallel reads
#                  are the multi-threaded ones); only those are built.
#  3. build-clang  only if clang++-14 is installed: the store, the query
#                  engine and the agent's spool and relabeling (the parts
#                  without gRPC that lock) compiled with
#                  clang's -Wthread-safety, which checks the absl::Mutex
#                  annotations of storage/store.h (a warning fails the build).
#  4. build-fuzz   only if clang++-14 is installed: the libFuzzer targets of
#                  tests/fuzz (ASan + UBSan), each run for FUZZ_SECONDS
#                  (default 20) by tests/fuzz/run.sh; a crash fails the run.
#
# A sanitizer report stops the program (so its test fails). Ends with the
# plain run's "N passed, N failed" line (a build step counts as one test)
# and exits non-zero on any failure. Suppressions: tests/sanitizers/, and
# the rule for adding one: docs/DEVELOPING.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh --sanitizers
jobs="${SHEAF_BUILD_JOBS:-2}"
source deploy/ccache.sh  # as in deploy/build.sh
san="$PWD/tests/sanitizers"

export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export LSAN_OPTIONS="suppressions=$san/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
# Debian's libraries are not built with TSan: libc calls made from them are
# not checked (their locking still is); tests/sanitizers/tsan.supp explains.
export TSAN_OPTIONS="halt_on_error=1:abort_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$san/tsan.supp"

passed=0
failed=0
rc=0
started=$SECONDS
phase() {
  echo "== $* ($((SECONDS - started)) s so far)"
}

# run_tests DIR [meson test arguments]: runs and counts like deploy/test.sh.
run_tests() {
  local dir="$1"
  shift
  set +e
  # Sanitizers slow tests down (measured: e2e 2x under ASan,
  # series_store_test 8x under TSan; all well within their timeouts), so
  # twice the timeouts.
  meson test -C "$dir" --no-rebuild --print-errorlogs --num-processes 2 --timeout-multiplier 2 "$@" 2>&1 |
    tee "$dir/test-output.txt"
  local r=${PIPESTATUS[0]}
  set -e
  local ok fail timeout
  ok=$(grep -E '^Ok:' "$dir/test-output.txt" | awk '{print $2}')
  fail=$(grep -E '^Fail:' "$dir/test-output.txt" | awk '{print $2}')
  timeout=$(grep -E '^Timeout:' "$dir/test-output.txt" | awk '{print $2}')
  passed=$((passed + ${ok:-0}))
  failed=$((failed + ${fail:-0} + ${timeout:-0}))
  if [ "$r" -ne 0 ]; then rc=1; fi
}

phase "1/4 AddressSanitizer + UndefinedBehaviorSanitizer: build-asan"
if [ ! -f build-asan/build.ninja ]; then
  meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbenchmarks=false >/dev/null
fi
ninja -C build-asan -j "$jobs"
run_tests build-asan

phase "2/4 ThreadSanitizer: build-tsan (the store and the query engine)"
if [ ! -f build-tsan/build.ninja ]; then
  meson setup build-tsan -Db_sanitize=thread -Db_lundef=false -Dbenchmarks=false >/dev/null
fi
ninja -C build-tsan build.ninja >/dev/null  # picks up changed meson.build files before listing
# crash_test forks a process that already runs RocksDB's threads, and TSan
# cannot follow a fork of a multi-threaded process ("dup thread"); it is a
# crash test, not a threading one, and runs in the other two trees.
# The promql suite: queries read series on threads of their own
# (promql/series_reader.h).
tsan_tests=()
tsan_targets=()
for suite in storage promql; do
  while read -r t; do
    if [ "$t" != crash_test ]; then
      tsan_tests+=("$t")
      tsan_targets+=("tests/$suite/$t")
    fi
  done < <(meson test -C build-tsan --list --no-rebuild --suite "$suite" 2>/dev/null | sed -n "s|^sheaf:$suite / ||p")
done
if [ ${#tsan_tests[@]} -eq 0 ]; then
  echo "no storage or promql tests found in build-tsan" >&2
  exit 1
fi
ninja -C build-tsan -j "$jobs" "${tsan_targets[@]}"
run_tests build-tsan "${tsan_tests[@]}"

if command -v clang++-14 >/dev/null; then
  phase "3/4 clang -Wthread-safety: build-clang (the store, the query engine, the agent's spool and relabeling)"
  if [ ! -f build-clang/build.ninja ]; then
    CXX=clang++-14 meson setup build-clang -Dcpp_args=-Wthread-safety -Dtests=false -Dbenchmarks=false >/dev/null
  fi
  if ninja -C build-clang -j "$jobs" -k 0 storage/libsheaf_storage.a promql/libsheaf_promql.a \
    spool/libsheaf_spool.a agent/relabel/libsheaf_agent_relabel.a; then
    echo "clang -Wthread-safety: no warnings"
    passed=$((passed + 1))
  else
    echo "clang -Wthread-safety: warnings (errors above)"
    failed=$((failed + 1))
    rc=1
  fi
else
  phase "3/4 clang -Wthread-safety: skipped (clang++-14 is not installed)"
fi

if command -v clang++-14 >/dev/null; then
  # The libFuzzer targets (tests/fuzz, docs/DEVELOPING.md "Fuzzing"), each
  # for FUZZ_SECONDS on a temp copy of its corpus; a crash fails the run
  # and its reproducer's path is printed. Only what the targets use is
  # built (no gRPC services).
  phase "4/4 libFuzzer: build-fuzz, ${FUZZ_SECONDS:-20} s per target"
  if SHEAF_BUILD_JOBS="$jobs" FUZZ_SECONDS="${FUZZ_SECONDS:-20}" bash tests/fuzz/run.sh --setup build-fuzz; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    rc=1
  fi
else
  phase "4/4 libFuzzer: skipped (clang++-14 is not installed)"
fi

phase "done"
echo "${passed} passed, ${failed} failed"
exit "$rc"
