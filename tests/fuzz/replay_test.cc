// Replays the fuzz corpora (tests/corpus/<target>/: the hand-written seeds
// and every input that once crashed a target) through the targets' bodies
// in the normal test suite, so the regressions stay covered without clang
// or libFuzzer. A body aborts on a failed property, which fails this test;
// under build-asan the sanitizers check the same inputs too.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <zlib.h>

#include "daemon/grpc_codec.h"
#include "daemon/http_api.h"
#include "model/exposition_parser.h"
#include "tests/fuzz/targets.h"

namespace sheaf::fuzz {
namespace {

class ReplayTest : public ::testing::TestWithParam<Target> {};

TEST_P(ReplayTest, EveryCorpusInputRunsClean) {
  const std::filesystem::path dir = std::filesystem::path(SHEAF_CORPUS_DIR) / GetParam().name;
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir << " is missing: every target has a seed corpus";
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 3u) << dir << " should hold a few valid and edge-case inputs";
  for (const auto& path : files) {
    SCOPED_TRACE(path.string());
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in) << "cannot read " << path;
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(GetParam().fn(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, ReplayTest, ::testing::ValuesIn(kTargets),
                         [](const ::testing::TestParamInfo<Target>& info) { return std::string(info.param.name); });

// What the fuzzers found, as readable cases that fail without their fixes
// even where the sanitizers are off (docs/RELIABILITY.md, "Fuzzing").
TEST(FuzzFindings, ApiTimeBeyondTenBillionSecondsDoesNotOverflow) {
  // whole seconds * 10^9 overflowed int64 past ~9.2e9 s (year 2262).
  EXPECT_EQ(daemon::ParseApiTime("-11e9").value(), -11'000'000'000'000);
  EXPECT_EQ(daemon::ParseApiTime("9007199254.740").value(), 9'007'199'254'740);
  EXPECT_EQ(daemon::ParseApiTime("-1.5").value(), -1500);
  EXPECT_EQ(daemon::ParseApiTime("1435781451.781").value(), 1'435'781'451'781);
  EXPECT_FALSE(daemon::ParseApiTime("1e13").ok());  // past the 2^53 ms bound
}

TEST(FuzzFindings, DetectFormatWithBackslashAtEndOfLabels) {
  // The label scan stepped past the end and substr() threw out_of_range.
  EXPECT_EQ(model::DetectExpositionFormat("a{b=\"\\"), model::ExpositionFormat::kPrometheusText);
  EXPECT_EQ(model::DetectExpositionFormat("a{b=\"\\\n"), model::ExpositionFormat::kPrometheusText);
  EXPECT_EQ(model::DetectExpositionFormat("a 1 -9223372036854775808\n"), model::ExpositionFormat::kPrometheusText);
}

TEST(FuzzFindings, TruncatedGzipLeavesNoOutput) {
  std::string gz(256, '\0');
  z_stream zs{};
  ASSERT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  const std::string text(1000, 'x');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  zs.avail_in = static_cast<uInt>(text.size());
  zs.next_out = reinterpret_cast<Bytef*>(gz.data());
  zs.avail_out = static_cast<uInt>(gz.size());
  ASSERT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  gz.resize(zs.total_out - 4);  // cut into the trailer
  deflateEnd(&zs);
  std::string out = "stale";
  const grpc::Status s = daemon::Inflate({grpc::Slice(gz.data(), gz.size())}, 16 + MAX_WBITS, 1 << 20, "test", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(out.empty()) << out.size() << " bytes of a half message left behind";
}

}  // namespace
}  // namespace sheaf::fuzz
