#include "model/exposition_parser.h"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "model/labels.h"

namespace sheaf::model {
namespace {

bool IsBlank(char c) { return c == ' ' || c == '\t'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }
bool IsMetricNameStart(char c) { return IsNameStart(c) || c == ':'; }
bool IsMetricNameChar(char c) { return IsNameChar(c) || c == ':'; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view TrimBlanks(std::string_view s) {
  while (!s.empty() && IsBlank(s.front())) s.remove_prefix(1);
  while (!s.empty() && (IsBlank(s.back()) || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// What stands at line[i], for messages: 'x', "the end of the line", or a
// byte in hex when it is not printable ASCII.
std::string Found(std::string_view line, size_t i) {
  if (i >= line.size()) return "the end of the line";
  const unsigned char c = static_cast<unsigned char>(line[i]);
  if (c == '\t') return "a tab";
  if (c < 0x20 || c >= 0x7f) return fmt::format("byte 0x{:02x}", c);
  return fmt::format("'{}'", static_cast<char>(c));
}

size_t NameEnd(std::string_view s, size_t i, bool metric) {
  while (i < s.size() && (metric ? IsMetricNameChar(s[i]) : IsNameChar(s[i]))) ++i;
  return i;
}

// A float as Prometheus (Go's strconv.ParseFloat) or OpenMetrics writes
// it: optional sign, decimal digits with '.' and exponent, "Inf" /
// "Infinity" with either sign and "NaN" in any case; Prometheus text also
// takes hexadecimal ("0x1p-3").
std::optional<double> ParseFloatToken(std::string_view t, bool allow_hex) {
  if (t.empty()) return std::nullopt;
  bool negative = false;
  std::string_view body = t;
  if (body[0] == '+' || body[0] == '-') {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  if (EqualsIgnoreCase(body, "inf") || EqualsIgnoreCase(body, "infinity")) {
    return negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  }
  if (EqualsIgnoreCase(body, "nan")) {
    if (body.size() != t.size()) return std::nullopt;  // no sign on NaN
    return std::numeric_limits<double>::quiet_NaN();
  }
  if (body.empty() || !(IsDigit(body[0]) || body[0] == '.')) return std::nullopt;
  auto format = std::chars_format::general;
  if (allow_hex && body.size() > 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'X')) {
    body.remove_prefix(2);
    format = std::chars_format::hex;
    if (body.empty() || body[0] == '+' || body[0] == '-') return std::nullopt;
  }
  double v = 0;
  auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), v, format);
  if (ec != std::errc() || end != body.data() + body.size()) return std::nullopt;
  return negative ? -v : v;
}

// Prometheus text: an integer number of milliseconds, optional sign.
std::optional<int64_t> ParseMillis(std::string_view t) {
  bool negative = false;
  if (!t.empty() && (t[0] == '+' || t[0] == '-')) {
    negative = t[0] == '-';
    t.remove_prefix(1);
  }
  if (t.empty() || !IsDigit(t[0])) return std::nullopt;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || end != t.data() + t.size()) return std::nullopt;
  if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return negative ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
}

// OpenMetrics: seconds as a decimal real number ("1520879607.789",
// "1.5e9"), converted to milliseconds exactly, the dropped digits rounded
// half away from zero. No floating point on the way, so "x.789" is 789 ms.
std::optional<int64_t> ParseSecondsAsMillis(std::string_view t) {
  bool negative = false;
  if (!t.empty() && (t[0] == '+' || t[0] == '-')) {
    negative = t[0] == '-';
    t.remove_prefix(1);
  }
  std::string digits;  // mantissa without the point
  int64_t exponent = 0;
  size_t i = 0;
  bool any_digit = false;
  for (; i < t.size() && IsDigit(t[i]); ++i, any_digit = true) digits += t[i];
  if (i < t.size() && t[i] == '.') {
    for (++i; i < t.size() && IsDigit(t[i]); ++i, any_digit = true) {
      digits += t[i];
      --exponent;
    }
  }
  if (!any_digit) return std::nullopt;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    bool exp_negative = false;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) exp_negative = t[i++] == '-';
    if (i == t.size()) return std::nullopt;
    int64_t e = 0;
    for (; i < t.size() && IsDigit(t[i]); ++i) {
      e = e * 10 + (t[i] - '0');
      if (e > 1000) return std::nullopt;  // far outside int64 milliseconds either way
    }
    exponent += exp_negative ? -e : e;
  }
  if (i != t.size()) return std::nullopt;
  exponent += 3;  // seconds -> milliseconds
  const size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) return 0;
  digits.erase(0, first);
  // value = digits * 10^exponent
  std::string integer;
  bool round_up = false;
  if (exponent >= 0) {
    if (static_cast<int64_t>(digits.size()) + exponent > 19) return std::nullopt;
    integer = digits + std::string(static_cast<size_t>(exponent), '0');
  } else {
    const int64_t keep = static_cast<int64_t>(digits.size()) + exponent;  // digits left of the point
    if (keep > 0) {
      integer = digits.substr(0, static_cast<size_t>(keep));
      round_up = digits[static_cast<size_t>(keep)] >= '5';
    } else {
      integer = "0";
      round_up = keep == 0 && digits[0] >= '5';
    }
  }
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(integer.data(), integer.data() + integer.size(), v);
  if (ec != std::errc()) return std::nullopt;
  if (round_up) ++v;
  if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return negative ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
}

struct FamilySuffixes {
  std::array<std::string_view, 4> suffixes;
  size_t count;
};

// Sample names a family of this type holds: the family name plus one of
// these. `_created` is OpenMetrics only: in Prometheus text it is a family
// of its own (client libraries declare it as a gauge).
FamilySuffixes SuffixesOf(FamilyType type, bool openmetrics) {
  switch (type) {
    case FamilyType::kCounter:
      return openmetrics ? FamilySuffixes{{"_total", "_created", ""}, 3} : FamilySuffixes{{"", "_total"}, 2};
    case FamilyType::kHistogram:
      return {{"_bucket", "_sum", "_count", "_created"}, openmetrics ? 4u : 3u};
    case FamilyType::kGaugeHistogram:
      return {{"_bucket", "_gsum", "_gcount"}, 3};
    case FamilyType::kSummary:
      return {{"", "_sum", "_count", "_created"}, openmetrics ? 4u : 3u};
    case FamilyType::kInfo:
      return {{"_info"}, 1};
    case FamilyType::kUnknown:
    case FamilyType::kGauge:
    case FamilyType::kStateSet:
      break;
  }
  return {{""}, 1};
}

std::optional<FamilyType> ParseFamilyType(std::string_view name, bool openmetrics) {
  static constexpr std::pair<std::string_view, FamilyType> kCommon[] = {
      {"counter", FamilyType::kCounter},
      {"gauge", FamilyType::kGauge},
      {"histogram", FamilyType::kHistogram},
      {"summary", FamilyType::kSummary},
  };
  static constexpr std::pair<std::string_view, FamilyType> kOpenMetrics[] = {
      {"gaugehistogram", FamilyType::kGaugeHistogram},
      {"stateset", FamilyType::kStateSet},
      {"info", FamilyType::kInfo},
      {"unknown", FamilyType::kUnknown},
  };
  for (const auto& [n, t] : kCommon) {
    if (n == name) return t;
  }
  if (openmetrics) {
    for (const auto& [n, t] : kOpenMetrics) {
      if (n == name) return t;
    }
  } else if (name == "untyped") {
    return FamilyType::kUnknown;
  }
  return std::nullopt;
}

// Sets labels[*n] (reusing its strings' memory) and advances *n.
void SetLabel(Labels& labels, size_t* n, std::string_view name, std::string_view value) {
  if (*n == labels.size()) labels.emplace_back();
  labels[*n].name.assign(name);
  labels[*n].value.assign(value);
  ++*n;
}

}  // namespace

std::string_view ExpositionFormatName(ExpositionFormat format) {
  return format == ExpositionFormat::kOpenMetrics ? "openmetrics" : "prometheus";
}

std::string_view FamilyTypeName(FamilyType type) {
  switch (type) {
    case FamilyType::kUnknown:
      return "unknown";
    case FamilyType::kCounter:
      return "counter";
    case FamilyType::kGauge:
      return "gauge";
    case FamilyType::kHistogram:
      return "histogram";
    case FamilyType::kGaugeHistogram:
      return "gaugehistogram";
    case FamilyType::kSummary:
      return "summary";
    case FamilyType::kStateSet:
      return "stateset";
    case FamilyType::kInfo:
      return "info";
  }
  return "unknown";
}

MetricType ModelTypeOf(FamilyType family, std::string_view suffix) {
  if (suffix == "_created") return MetricType::kGauge;  // a time, whatever the family
  switch (family) {
    case FamilyType::kUnknown:
      return MetricType::kUnspecified;
    case FamilyType::kCounter:
      return MetricType::kCounter;
    case FamilyType::kHistogram:
      return suffix == "_bucket" || suffix == "_sum" || suffix == "_count" ? MetricType::kHistogram
                                                                           : MetricType::kGauge;
    case FamilyType::kSummary:
      return suffix == "_count" ? MetricType::kCounter : MetricType::kGauge;
    case FamilyType::kGauge:
    case FamilyType::kGaugeHistogram:
    case FamilyType::kStateSet:
    case FamilyType::kInfo:
      return MetricType::kGauge;
  }
  return MetricType::kUnspecified;
}

ExpositionParser::ExpositionParser(ExpositionFormat format, ExpositionParserOptions options)
    : format_(format), options_(options) {}

void ExpositionParser::Feed(std::string_view bytes) {
  if (pos_ > 0) {
    buffer_.erase(0, pos_);
    pos_ = 0;
  }
  if (skipping_) {
    // Inside an overlong line: drop bytes up to its end without keeping them.
    size_t nl = bytes.find('\n');
    if (nl == std::string_view::npos) {
      consumed_ += bytes.size();
      return;
    }
    consumed_ += nl + 1;
    bytes.remove_prefix(nl + 1);
    skipping_ = false;
  }
  buffer_.append(bytes);
}

void ExpositionParser::Close() { closed_ = true; }

absl::StatusOr<bool> ExpositionParser::Next(ExpositionSample* out) {
  for (;;) {
    if (skipping_) {
      if (!closed_) return false;  // waiting for the end of an overlong line
      skipping_ = false;
    }
    if (pos_ == buffer_.size()) {
      if (!closed_ || finished_) return false;
      finished_ = true;
      if (auto s = Finish(); !s.ok()) return s;
      return false;
    }
    size_t nl = buffer_.find('\n', pos_);
    size_t end = nl == std::string::npos ? buffer_.size() : nl;
    if (end - pos_ > options_.max_line_bytes) {
      ++line_;
      const uint64_t seen = end - pos_;
      if (nl == std::string::npos) {
        consumed_ += buffer_.size() - pos_;
        buffer_.clear();
        pos_ = 0;
        skipping_ = !closed_;
      } else {
        consumed_ += nl + 1 - pos_;
        pos_ = nl + 1;
      }
      return absl::InvalidArgumentError(fmt::format("line {}: longer than {} bytes ({}{} seen); skipped", line_,
                                                    options_.max_line_bytes, seen, skipping_ ? " so far" : ""));
    }
    if (nl == std::string::npos && !closed_) return false;  // the rest of the line is still to come
    std::string_view line(buffer_.data() + pos_, end - pos_);
    consumed_ += (nl == std::string::npos ? end : nl + 1) - pos_;
    pos_ = nl == std::string::npos ? end : nl + 1;
    auto sample = ParseLine(line, out);
    if (!sample.ok() || *sample) return sample;
  }
}

absl::Status ExpositionParser::Finish() {
  if (format_ == ExpositionFormat::kOpenMetrics && !eof_seen_) {
    return absl::InvalidArgumentError(
        fmt::format("line {}: the input ends without \"# EOF\", which OpenMetrics requires as its last line "
                    "(is the input truncated?)",
                    line_));
  }
  return absl::OkStatus();
}

absl::Status ExpositionParser::Error(size_t column, std::string_view message) const {
  return absl::InvalidArgumentError(fmt::format("line {}, column {}: {}", line_, column + 1, message));
}

absl::StatusOr<bool> ExpositionParser::ParseLine(std::string_view line, ExpositionSample* out) {
  ++line_;
  const bool om = format_ == ExpositionFormat::kOpenMetrics;
  if (eof_seen_) {
    if (after_eof_reported_) return false;
    after_eof_reported_ = true;
    return absl::InvalidArgumentError(
        fmt::format("line {}: text after \"# EOF\", which must be the last line; the rest is ignored", line_));
  }
  if (!om) line = TrimBlanks(line);
  if (line.empty()) {
    if (om) return Error(0, "empty line (OpenMetrics allows none)");
    return false;
  }
  if (line[0] == '#') return ParseComment(line);
  return ParseSample(line, out);
}

void ExpositionParser::EnterFamily(std::string_view name) {
  if (name != family_) StartFamily(name);
}

void ExpositionParser::StartFamily(std::string_view name) {
  family_.assign(name);
  family_type_ = FamilyType::kUnknown;
  help_.clear();
  unit_.clear();
  family_has_type_ = family_has_help_ = family_has_unit_ = family_has_samples_ = false;
}

absl::StatusOr<bool> ExpositionParser::ParseComment(std::string_view line) {
  const bool om = format_ == ExpositionFormat::kOpenMetrics;
  size_t i = 1;
  std::string_view keyword;
  if (om) {
    if (line == "# EOF") {
      eof_seen_ = true;
      return false;
    }
    if (line.size() < 2 || line[1] != ' ') {
      return Error(1,
                   "expected \"# TYPE\", \"# HELP\", \"# UNIT\" or \"# EOF\" (OpenMetrics allows no other comments)");
    }
    i = 2;
    size_t end = line.find(' ', i);
    keyword = line.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i);
    if (keyword != "TYPE" && keyword != "HELP" && keyword != "UNIT") {
      return Error(i, fmt::format("\"# {}\": OpenMetrics allows only # TYPE, # HELP, # UNIT and a final # EOF",
                                  Abbreviate(keyword, 32)));
    }
    i += keyword.size();
    if (i >= line.size()) return Error(i, fmt::format("expected a metric name after # {}", keyword));
    ++i;  // the one space
  } else {
    while (i < line.size() && IsBlank(line[i])) ++i;
    size_t end = i;
    while (end < line.size() && !IsBlank(line[end])) ++end;
    keyword = line.substr(i, end - i);
    if (keyword != "TYPE" && keyword != "HELP") return false;  // a free comment
    i = end;
    if (i == line.size()) return Error(i, fmt::format("expected a metric name after # {}", keyword));
    while (i < line.size() && IsBlank(line[i])) ++i;
  }

  if (i >= line.size() || !IsMetricNameStart(line[i])) {
    return Error(i, fmt::format("expected a metric name after # {}, found {}", keyword, Found(line, i)));
  }
  const size_t name_end = NameEnd(line, i, true);
  const std::string_view name = line.substr(i, name_end - i);
  i = name_end;
  std::string_view rest;
  if (i < line.size()) {
    if (om ? line[i] != ' ' : !IsBlank(line[i])) {
      return Error(i, fmt::format("expected a space after the metric name \"{}\", found {}", name, Found(line, i)));
    }
    rest = line.substr(i + 1);
    if (!om) rest = TrimBlanks(rest);
  }
  EnterFamily(name);

  if (keyword == "TYPE") {
    if (family_has_type_) return Error(0, fmt::format("a second # TYPE line for \"{}\"", name));
    if (family_has_samples_) {
      return Error(0, fmt::format("# TYPE for \"{}\" comes after its samples; it must come before them", name));
    }
    auto type = ParseFamilyType(rest, om);
    if (!type) {
      return Error(i + 1, fmt::format("unknown metric type \"{}\"; expected {}", Abbreviate(rest, 32),
                                      om ? "counter, gauge, histogram, gaugehistogram, stateset, info, summary "
                                           "or unknown"
                                         : "counter, gauge, histogram, summary or untyped"));
    }
    family_type_ = *type;
    family_has_type_ = true;
    return false;
  }
  if (keyword == "UNIT") {
    if (family_has_unit_) return Error(0, fmt::format("a second # UNIT line for \"{}\"", name));
    if (family_has_samples_) return Error(0, fmt::format("# UNIT for \"{}\" comes after its samples", name));
    for (size_t k = 0; k < rest.size(); ++k) {
      if (!IsMetricNameChar(rest[k])) {
        return Error(i + 1 + k, fmt::format("a unit is made of [a-zA-Z0-9_:], found {}", Found(rest, k)));
      }
    }
    if (!rest.empty() &&
        !(name.size() > rest.size() + 1 && name.ends_with(rest) && name[name.size() - rest.size() - 1] == '_')) {
      return Error(i + 1, fmt::format("the unit \"{}\" must be the suffix of the metric name \"{}\" (\"..._{}\")", rest,
                                      name, rest));
    }
    unit_.assign(rest);
    family_has_unit_ = true;
    return false;
  }
  // HELP: \\ and \n escapes (OpenMetrics also \"; in Prometheus text any
  // other backslash stays as written).
  if (family_has_help_) return Error(0, fmt::format("a second # HELP line for \"{}\"", name));
  if (om && family_has_samples_) return Error(0, fmt::format("# HELP for \"{}\" comes after its samples", name));
  scratch_.clear();
  for (size_t k = 0; k < rest.size(); ++k) {
    if (rest[k] != '\\') {
      scratch_ += rest[k];
      continue;
    }
    const char next = k + 1 < rest.size() ? rest[k + 1] : '\0';
    if (next == '\\' || next == 'n' || (om && next == '"')) {
      scratch_ += next == 'n' ? '\n' : next;
      ++k;
    } else if (om) {
      return Error(i + 1 + k, "invalid escape in # HELP text; OpenMetrics allows \\\\, \\\" and \\n");
    } else {
      scratch_ += '\\';
    }
  }
  if (!IsValidUtf8(scratch_)) return Error(i + 1, "the # HELP text is not valid UTF-8");
  help_ = scratch_;
  family_has_help_ = true;
  return false;
}

absl::StatusOr<bool> ExpositionParser::ParseSample(std::string_view line, ExpositionSample* out) {
  const bool om = format_ == ExpositionFormat::kOpenMetrics;
  size_t i = 0;
  if (!IsMetricNameStart(line[0])) {
    return Error(0, fmt::format("expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or '#', found {}", Found(line, 0)));
  }
  const size_t name_end = NameEnd(line, 0, true);
  const std::string_view name = line.substr(0, name_end);
  i = name_end;
  size_t n = 0;  // labels set in out->labels
  SetLabel(out->labels, &n, kMetricNameLabel, name);

  auto skip_blanks = [&] {
    if (!om) {
      while (i < line.size() && IsBlank(line[i])) ++i;
    }
  };
  // Parses `{name="value",...}` at line[i] into out->labels (or checks it
  // only, for an exemplar's labels, when `keep` is false).
  auto parse_labels = [&](bool keep) -> absl::Status {
    ++i;  // '{'
    bool first = true;
    for (;;) {
      skip_blanks();
      if (i < line.size() && line[i] == '}') {
        if (om && !first) return Error(i, "a ',' before '}' (OpenMetrics allows no trailing comma)");
        ++i;
        return absl::OkStatus();
      }
      if (i >= line.size() || !IsNameStart(line[i])) {
        return Error(i, fmt::format("expected a label name ([a-zA-Z_][a-zA-Z0-9_]*){}, found {}",
                                    first ? " or '}'" : "", Found(line, i)));
      }
      const size_t label_end = NameEnd(line, i, false);
      const std::string_view label = line.substr(i, label_end - i);
      i = label_end;
      skip_blanks();
      if (i >= line.size() || line[i] != '=') {
        return Error(i, fmt::format("expected '=' after the label name \"{}\", found {}", label, Found(line, i)));
      }
      ++i;
      skip_blanks();
      if (i >= line.size() || line[i] != '"') {
        return Error(i,
                     fmt::format("expected '\"' to start the value of label \"{}\", found {}", label, Found(line, i)));
      }
      const size_t value_start = ++i;
      scratch_.clear();
      for (;;) {
        const size_t run = i;
        while (i < line.size() && line[i] != '"' && line[i] != '\\') ++i;
        scratch_.append(line.data() + run, i - run);
        if (i >= line.size()) {
          return Error(value_start - 1, fmt::format("the value of label \"{}\" has no closing '\"'", label));
        }
        if (line[i] == '"') break;
        const char next = i + 1 < line.size() ? line[i + 1] : '\0';
        if (next == '\\' || next == '"' || next == 'n') {
          scratch_ += next == 'n' ? '\n' : next;
        } else if (om) {
          return Error(i, fmt::format("invalid escape in the value of label \"{}\"; OpenMetrics allows \\\\, \\\" "
                                      "and \\n",
                                      label));
        } else if (next == '\0') {
          return Error(value_start - 1, fmt::format("the value of label \"{}\" has no closing '\"'", label));
        } else {
          scratch_ += '\\';  // Prometheus keeps an unknown escape as written
          scratch_ += next;
        }
        i += 2;
      }
      ++i;  // closing quote
      if (!IsValidUtf8(scratch_)) {
        return Error(value_start, fmt::format("the value of label \"{}\" is not valid UTF-8", label));
      }
      if (keep) SetLabel(out->labels, &n, label, scratch_);
      first = false;
      skip_blanks();
      if (i < line.size() && line[i] == ',') {
        ++i;
        continue;
      }
      if (i < line.size() && line[i] == '}') {
        ++i;
        return absl::OkStatus();
      }
      return Error(i,
                   fmt::format("expected ',' or '}}' after the value of label \"{}\", found {}", label, Found(line, i)));
    }
  };
  // A token up to the next separator.
  auto token = [&] {
    const size_t start = i;
    while (i < line.size() && !(om ? line[i] == ' ' : IsBlank(line[i]))) ++i;
    return line.substr(start, i - start);
  };
  // One separator: a single space in OpenMetrics, any blanks otherwise.
  auto separator = [&](std::string_view before) -> absl::Status {
    if (i >= line.size() || !(om ? line[i] == ' ' : IsBlank(line[i]))) {
      return Error(i, fmt::format("expected a space {}, found {}", before, Found(line, i)));
    }
    ++i;
    skip_blanks();
    return absl::OkStatus();
  };

  skip_blanks();  // Prometheus text allows `name {...}`
  if (i < line.size() && line[i] == '{') {
    if (auto s = parse_labels(true); !s.ok()) return s;
  } else {
    i = name_end;
  }
  if (auto s = separator("before the value"); !s.ok()) return s;
  const size_t value_column = i;
  const std::string_view value_text = token();
  auto value = ParseFloatToken(value_text, !om);
  if (!value) {
    return Error(value_column, fmt::format("\"{}\" is not a number (expected e.g. 1.5, 2e-3, NaN, +Inf or -Inf)",
                                           Abbreviate(value_text, 64)));
  }
  std::optional<int64_t> timestamp;
  if (i < line.size()) {
    if (auto s = separator("after the value"); !s.ok()) return s;
    if (i < line.size() && !(om && line[i] == '#')) {
      const size_t ts_column = i;
      const std::string_view ts_text = token();
      timestamp = om ? ParseSecondsAsMillis(ts_text) : ParseMillis(ts_text);
      if (!timestamp) {
        return Error(ts_column, om ? fmt::format("\"{}\" is not a timestamp (OpenMetrics: seconds since the epoch, "
                                                 "e.g. 1700000000.123)",
                                                 Abbreviate(ts_text, 64))
                                   : fmt::format("\"{}\" is not a timestamp (Prometheus text: integer milliseconds "
                                                 "since the epoch, e.g. 1700000000123)",
                                                 Abbreviate(ts_text, 64)));
      }
      if (i < line.size()) {
        if (auto s = separator("after the timestamp"); !s.ok()) return s;
      }
    }
    if (i < line.size()) {
      if (!om) return Error(i, fmt::format("unexpected {} after the timestamp", Found(line, i)));
      // An exemplar: "# {labels} value [timestamp]"; checked, then dropped.
      if (line.substr(i, 3) != "# {") {
        return Error(i, fmt::format("expected an exemplar (\"# {{...}} value\") or the end of the line, found {}",
                                    Found(line, i)));
      }
      i += 2;
      if (auto s = parse_labels(false); !s.ok()) return s;
      if (auto s = separator("before the exemplar's value"); !s.ok()) return s;
      const size_t ex_column = i;
      if (!ParseFloatToken(token(), false)) return Error(ex_column, "the exemplar's value is not a number");
      if (i < line.size()) {
        if (auto s = separator("after the exemplar's value"); !s.ok()) return s;
        const size_t ex_ts_column = i;
        if (!ParseSecondsAsMillis(token())) return Error(ex_ts_column, "the exemplar's timestamp is not a number");
        if (i < line.size()) return Error(i, fmt::format("unexpected {} after the exemplar", Found(line, i)));
      }
    }
  }

  // The family: the current one if the name is one of its samples' names.
  std::string_view suffix;
  bool in_family = false;
  if (name.starts_with(family_) && !family_.empty()) {
    suffix = name.substr(family_.size());
    const FamilySuffixes allowed = SuffixesOf(family_type_, om);
    for (size_t k = 0; k < allowed.count && !in_family; ++k) in_family = suffix == allowed.suffixes[k];
  }
  if (!in_family) {
    StartFamily(name);  // a family of its own, without metadata
    suffix = {};
  }
  family_has_samples_ = true;
  out->labels.resize(n);
  out->value = *value;
  out->timestamp_ms = timestamp;
  out->family_type = family_type_;
  out->type = ModelTypeOf(family_type_, suffix);
  out->created = om && suffix == "_created";
  out->line = line_;
  return true;
}

ExpositionFormat DetectExpositionFormat(std::string_view head) {
  size_t pos = 0;
  while (pos < head.size()) {
    size_t nl = head.find('\n', pos);
    if (nl == std::string_view::npos) {
      if (pos > 0) break;  // an incomplete last line
      nl = head.size();    // the whole input is one line
    }
    std::string_view line = TrimBlanks(head.substr(pos, nl - pos));
    pos = nl + 1;
    if (line.empty()) continue;
    if (line == "# EOF" || line.starts_with("# UNIT ")) return ExpositionFormat::kOpenMetrics;
    if (line.starts_with("# TYPE ")) {
      std::string_view type = line.substr(line.find_last_of(' ') + 1);
      if (type == "gaugehistogram" || type == "stateset" || type == "info" || type == "unknown") {
        return ExpositionFormat::kOpenMetrics;
      }
      continue;
    }
    if (line[0] == '#') continue;
    // A sample: skip the name and labels (quotes may hold anything), then
    // look at the token after the value.
    size_t i = 0;
    while (i < line.size() && !IsBlank(line[i]) && line[i] != '{') ++i;
    while (i < line.size() && IsBlank(line[i])) ++i;
    if (i < line.size() && line[i] == '{') {
      bool quoted = false;
      for (; i < line.size(); ++i) {
        if (quoted && line[i] == '\\') {
          // Skips the escaped byte, if any: past the end, the token search
          // below would cut the line at i > size() (found by tests/fuzz,
          // input tests/corpus/exposition/backslash_at_end).
          if (i + 1 < line.size()) ++i;
        } else if (line[i] == '"') {
          quoted = !quoted;
        } else if (!quoted && line[i] == '}') {
          ++i;
          break;
        }
      }
    }
    std::string_view tokens[2];
    for (auto& t : tokens) {
      while (i < line.size() && IsBlank(line[i])) ++i;
      size_t start = i;
      while (i < line.size() && !IsBlank(line[i])) ++i;
      t = line.substr(start, i - start);
    }
    std::string_view ts = tokens[1];
    if (ts.empty()) continue;                              // no timestamp: look further
    if (ts == "#") return ExpositionFormat::kOpenMetrics;  // an exemplar
    if (ts.find_first_of(".eE") != std::string_view::npos) return ExpositionFormat::kOpenMetrics;
    if (auto ms = ParseMillis(ts)) {
      // Not llabs(): INT64_MIN has no absolute value.
      return *ms > -100'000'000'000 && *ms < 100'000'000'000 ? ExpositionFormat::kOpenMetrics
                                                              : ExpositionFormat::kPrometheusText;
    }
    return ExpositionFormat::kPrometheusText;
  }
  return ExpositionFormat::kPrometheusText;
}

}  // namespace sheaf::model
