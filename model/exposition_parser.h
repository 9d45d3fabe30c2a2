// A streaming parser of the Prometheus text exposition format (0.0.4) and
// OpenMetrics 1.0 text: shared by `sheafctl import` and (later) the agent's
// scraping of local targets. No gRPC, protobuf or RocksDB.
//
// Input is fed in chunks of any size (a file read 1 MiB at a time, an HTTP
// body); lines may span chunks. Output is one sample at a time: its labels
// (with "__name__"), value, optional timestamp, and the type its family
// declared in `# TYPE`. Memory stays bounded whatever the input: at most one
// line (`max_line_bytes`) plus the unread part of the last chunk is held; a
// longer line is skipped with an error.
//
// Errors describe one line ("line 12, column 5: ...") and never end the
// parse: the next call goes on with the following line, so a caller can
// count bad lines and keep importing. Garbage never crashes the parser.
//
// The two formats differ, and the parser follows each one's rules:
//   - timestamps: integer milliseconds (Prometheus) vs seconds with an
//     optional fraction (OpenMetrics, converted exactly to the nearest ms);
//   - Prometheus text allows blanks between tokens, blank lines, free `#`
//     comments and a trailing comma in `{...}`; OpenMetrics allows exactly
//     one space, no blank lines, only `# TYPE`/`# HELP`/`# UNIT` and a final
//     `# EOF`, and exemplars (`... # {trace_id="x"} 1.0`, checked, dropped);
//   - escapes in label values: `\\`, `\"`, `\n` in both; any other escape is
//     kept as written in Prometheus text (as Prometheus does) and an error
//     in OpenMetrics;
//   - OpenMetrics counters are `<family>_total` with `<family>_created`;
//     Prometheus text names the counter itself (often `..._total`).
//
// Thread-compatible: one parser per input.
#ifndef SHEAF_MODEL_EXPOSITION_PARSER_H_
#define SHEAF_MODEL_EXPOSITION_PARSER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/types.h"

namespace sheaf::model {

enum class ExpositionFormat {
  kPrometheusText,  // text/plain; version=0.0.4
  kOpenMetrics,     // application/openmetrics-text; version=1.0.0
};
std::string_view ExpositionFormatName(ExpositionFormat format);  // "prometheus", "openmetrics"

// A metric family's type as `# TYPE` names it. Prometheus text has
// counter, gauge, histogram, summary and untyped (= kUnknown); OpenMetrics
// adds gaugehistogram, stateset and info, and calls untyped "unknown".
enum class FamilyType : uint8_t {
  kUnknown,
  kCounter,
  kGauge,
  kHistogram,
  kGaugeHistogram,
  kSummary,
  kStateSet,
  kInfo,
};
std::string_view FamilyTypeName(FamilyType type);  // "counter", ...; kUnknown is "unknown"

// How a sample of a family is stored, given the sample's suffix after the
// family name ("" for the family name itself, "_bucket", "_sum", ...):
//   counter: kCounter (its `_created` sample: kGauge, a time, not a count)
//   gauge, stateset, info, gaugehistogram (which may go down): kGauge
//   histogram: `_bucket`, `_sum`, `_count` kHistogram; `_created` kGauge
//   summary: quantiles and `_sum` (observations may be negative) kGauge,
//            `_count` kCounter, `_created` kGauge
//   unknown / untyped: kUnspecified (sheafd treats it like a gauge)
MetricType ModelTypeOf(FamilyType family, std::string_view suffix);

struct ExpositionSample {
  // "__name__" first, then the labels in the order written; not sorted and
  // not checked beyond the syntax (sheafd validates and canonicalizes).
  Labels labels;
  double value = 0;  // NaN, +Inf and -Inf as written
  // Milliseconds since the epoch; none when the line has no timestamp.
  std::optional<int64_t> timestamp_ms;
  // The family the sample belongs to: the last `# TYPE`/`# HELP` name when
  // the sample's name is that family's (with one of its type's suffixes),
  // otherwise the sample's own name with kUnknown.
  FamilyType family_type = FamilyType::kUnknown;
  MetricType type = MetricType::kUnspecified;  // ModelTypeOf(family_type, suffix)
  // An OpenMetrics `<family>_created` sample of a counter, histogram or
  // summary: the time the series started (its value, in seconds), not a
  // measurement. Importers usually skip these.
  bool created = false;
  int64_t line = 0;  // 1-based line number in the input

  std::string_view name() const { return labels.empty() ? std::string_view() : labels[0].value; }
};

struct ExpositionParserOptions {
  size_t max_line_bytes = 1 << 20;  // longer lines are skipped with an error
};

class ExpositionParser {
 public:
  explicit ExpositionParser(ExpositionFormat format, ExpositionParserOptions options = {});

  // Streaming input: Feed() chunks in order, then Close() once.
  void Feed(std::string_view bytes);
  void Close();  // no more input; a last line without '\n' is then parsed

  // The next sample of what was fed. true: *out holds it (its previous
  // contents are reused, so keep the same object for speed). false: the
  // input fed so far is used up (after Close(): the input is done).
  // INVALID_ARGUMENT describes one bad line; call again to go on.
  absl::StatusOr<bool> Next(ExpositionSample* out);

  // For callers that split lines themselves: parses one line (without its
  // '\n'). true with a sample; false for a comment, metadata or blank line.
  // Do not mix with Feed()/Next() on one parser.
  absl::StatusOr<bool> ParseLine(std::string_view line, ExpositionSample* out);
  // With ParseLine(): the input is done. An OpenMetrics input without
  // `# EOF` is an error (a truncated exposition).
  absl::Status Finish();

  ExpositionFormat format() const { return format_; }
  int64_t lines() const { return line_; }                // lines read so far
  uint64_t bytes_consumed() const { return consumed_; }  // bytes of those lines
  bool eof_marker_seen() const { return eof_seen_; }     // OpenMetrics `# EOF`

  // Metadata of the current family (the last `# TYPE`, `# HELP` or `# UNIT`
  // name, or the last sample's name when it started a family of its own).
  const std::string& family_name() const { return family_; }
  FamilyType family_type() const { return family_type_; }
  const std::string& family_help() const { return help_; }
  const std::string& family_unit() const { return unit_; }

 private:
  absl::StatusOr<bool> ParseComment(std::string_view line);
  absl::StatusOr<bool> ParseSample(std::string_view line, ExpositionSample* out);
  // Starts a family named `name` unless it is the current one.
  void EnterFamily(std::string_view name);
  void StartFamily(std::string_view name);  // a new family, without metadata
  absl::Status Error(size_t column, std::string_view message) const;

  const ExpositionFormat format_;
  const ExpositionParserOptions options_;
  std::string buffer_;  // unread input; lines are parsed from buffer_[pos_..]
  size_t pos_ = 0;
  bool closed_ = false;
  bool finished_ = false;
  bool skipping_ = false;  // inside a line over max_line_bytes
  int64_t line_ = 0;
  uint64_t consumed_ = 0;
  bool eof_seen_ = false;
  bool after_eof_reported_ = false;

  std::string family_;
  FamilyType family_type_ = FamilyType::kUnknown;
  std::string help_;
  std::string unit_;
  bool family_has_type_ = false;
  bool family_has_help_ = false;
  bool family_has_unit_ = false;
  bool family_has_samples_ = false;
  std::string scratch_;  // unescaped text
};

// Guesses the format of an input from its first bytes (pass at least the
// first few KiB; an incomplete last line is ignored): OpenMetrics when a
// line is `# EOF` or `# UNIT ...`, a `# TYPE` names a type only OpenMetrics
// has, or the first timestamp is in seconds (a fraction, an exponent, or
// below 10^11, which in milliseconds would be 1973); Prometheus text
// otherwise.
ExpositionFormat DetectExpositionFormat(std::string_view head);

}  // namespace sheaf::model

#endif  // SHEAF_MODEL_EXPOSITION_PARSER_H_
