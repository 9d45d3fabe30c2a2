// Fuzz target "exposition": the Prometheus text and OpenMetrics parser
// (model/exposition_parser.h) that `sheafctl import` and the agent's
// scrapes use. The first byte picks the format and the chunk size the
// input is fed in (streaming must not depend on where chunks end); the
// rest is parsed by Feed()/Next(), and again line by line by ParseLine().
#include <algorithm>
#include <cmath>
#include <string>

#include "model/exposition_parser.h"
#include "tests/fuzz/targets.h"

namespace sheaf::fuzz {
namespace {

constexpr size_t kMaxSamples = 100'000;  // enough for any input the fuzzer makes

}  // namespace

int FuzzExposition(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const model::ExpositionFormat format =
      (data[0] & 1) ? model::ExpositionFormat::kOpenMetrics : model::ExpositionFormat::kPrometheusText;
  const size_t chunk = 1 + (data[0] >> 1);
  const std::string_view text = AsText(data + 1, size - 1);
  (void)model::DetectExpositionFormat(text);

  model::ExpositionParserOptions options;
  options.max_line_bytes = 4096;  // small, so the skipping of long lines is reached
  model::ExpositionParser streaming(format, options);
  model::ExpositionSample sample;
  size_t samples = 0;
  auto drain = [&] {
    while (samples < kMaxSamples) {
      auto next = streaming.Next(&sample);
      if (next.ok() && !*next) return;
      if (next.ok()) {
        ++samples;
        CheckOrDie(!sample.labels.empty() && sample.labels[0].name == "__name__",
                   "a sample without __name__ first");
        CheckOrDie(sample.line >= 1 && sample.line <= streaming.lines(), "a sample's line number is out of range");
      }
    }
  };
  for (size_t at = 0; at < text.size(); at += chunk) {
    streaming.Feed(text.substr(at, chunk));
    drain();
  }
  streaming.Close();
  drain();
  CheckOrDie(streaming.bytes_consumed() <= text.size(), "consumed more bytes than were fed");

  model::ExpositionParser by_line(format, options);
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    (void)by_line.ParseLine(text.substr(start, end - start), &sample);
    start = end + 1;
  }
  (void)by_line.Finish();
  return 0;
}

}  // namespace sheaf::fuzz
