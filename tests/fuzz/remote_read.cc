// Fuzz target "remote_read": the decoding half of POST /api/v1/read
// (daemon/remote_read.cc): the snappy block, the ReadRequest parse, and the
// conversion of each query's matchers (daemon/remote_decode.h: ToMatchers,
// which compiles regexes with RE2), then each matcher applied to a value.
#include <string>

#include "daemon/remote_decode.h"
#include "tests/fuzz/targets.h"

namespace sheaf::fuzz {
namespace {

constexpr size_t kMaxUncompressedBytes = 256 << 10;  // RemoteReadOptions' default
constexpr size_t kMaxMatchers = 10'000;              // RemoteReadOptions' default

}  // namespace

int FuzzRemoteRead(const uint8_t* data, size_t size) {
  std::string message;
  if (!Unsnappy(data, size, kMaxUncompressedBytes, &message)) return 0;
  prompb::ReadRequest read;
  if (!read.ParseFromString(message)) return 0;
  size_t count = 0;
  for (const prompb::Query& q : read.queries()) count += static_cast<size_t>(q.matchers_size());
  if (count > kMaxMatchers) return 0;
  for (int i = 0; i < read.queries_size(); ++i) {
    auto matchers = daemon::remote::ToMatchers(read.queries(i), i);
    if (!matchers.ok()) continue;
    for (const model::Matcher& m : *matchers) (void)m.Matches(read.queries(i).matchers(0).value());
  }
  return 0;
}

}  // namespace sheaf::fuzz
