// The fuzz targets' bodies, shared by the libFuzzer executables
// (fuzz_main.cc, built with -Dfuzz=true under clang) and by replay_test
// (the normal gcc test suite), which feeds them every file of
// tests/corpus/<target>/ so that a crash once found stays covered without
// clang. Each body takes any bytes, must never crash, leak or hang on them,
// and aborts (CheckOrDie) when a property of the code under test fails.
#ifndef SHEAF_TESTS_FUZZ_TARGETS_H_
#define SHEAF_TESTS_FUZZ_TARGETS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sheaf::fuzz {

using FuzzFn = int (*)(const uint8_t* data, size_t size);

int FuzzBatch(const uint8_t* data, size_t size);           // batch.cc
int FuzzPromql(const uint8_t* data, size_t size);          // promql.cc
int FuzzExposition(const uint8_t* data, size_t size);      // exposition.cc
int FuzzRemoteWrite(const uint8_t* data, size_t size);     // remote_write.cc
int FuzzRemoteRead(const uint8_t* data, size_t size);      // remote_read.cc
int FuzzSampleBlock(const uint8_t* data, size_t size);     // sample_block.cc
int FuzzRollupBlock(const uint8_t* data, size_t size);     // rollup_block.cc
int FuzzHttpParams(const uint8_t* data, size_t size);      // http_params.cc

struct Target {
  const char* name;  // its corpus: tests/corpus/<name>/; its executable: fuzz_<name>
  FuzzFn fn;
};
inline constexpr Target kTargets[] = {
    {"batch", FuzzBatch},
    {"promql", FuzzPromql},
    {"exposition", FuzzExposition},
    {"remote_write", FuzzRemoteWrite},
    {"remote_read", FuzzRemoteRead},
    {"sample_block", FuzzSampleBlock},
    {"rollup_block", FuzzRollupBlock},
    {"http_params", FuzzHttpParams},
};

// A property of the code under test failed: prints `what` and aborts, so
// libFuzzer saves the input and replay_test fails.
void CheckOrDie(bool ok, std::string_view what);

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// One input holding several (parameters, blocks to merge): the parts
// between "####" separators, at most `max_parts` (the last takes the rest).
std::vector<std::string_view> SplitParts(std::string_view input, size_t max_parts);

// A snappy block (remote write and read bodies) as the handlers read it:
// the length from the header first, refused past `max_bytes` before
// anything is allocated. False if it is not snappy or too large.
bool Unsnappy(const uint8_t* data, size_t size, size_t max_bytes, std::string* out);

}  // namespace sheaf::fuzz

#endif  // SHEAF_TESTS_FUZZ_TARGETS_H_
