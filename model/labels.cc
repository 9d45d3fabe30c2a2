#include "model/labels.h"

#include <algorithm>
#include <cstdint>

#include "common/utf8.h"

namespace sheaf::model {
namespace {

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

bool IsValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = IsAlpha(c) || c == '_' || c == ':' || (i > 0 && IsDigit(c));
    if (!ok) return false;
  }
  return true;
}

bool IsValidLabelName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = IsAlpha(c) || c == '_' || (i > 0 && IsDigit(c));
    if (!ok) return false;
  }
  return true;
}

bool IsValidUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    size_t n = Utf8SequenceLength(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

bool IsValidLabelValue(std::string_view value, size_t max_bytes) {
  return value.size() <= max_bytes && IsValidUtf8(value);
}

std::string SanitizeUtf8(std::string_view text, bool* changed) {
  std::string out;
  out.reserve(text.size());
  bool replaced = false;
  for (size_t i = 0; i < text.size();) {
    size_t n = Utf8SequenceLength(text, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      replaced = true;
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  if (changed) *changed = replaced;
  return out;
}

std::string Abbreviate(std::string_view text, size_t max_bytes) {
  std::string out;
  size_t i = 0;
  while (i < text.size() && out.size() < max_bytes) {
    size_t n = Utf8SequenceLength(text, i);
    if (n == 0) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      unsigned char c = static_cast<unsigned char>(text[i]);
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  if (i < text.size()) out += "...(" + std::to_string(text.size() - i) + " more bytes)";
  return out;
}

std::string FormatLabelsShort(const Labels& labels, size_t max_bytes) {
  size_t total = 0;
  for (const Label& l : labels) total += l.name.size() + l.value.size() + 4;
  if (total <= max_bytes) {
    bool valid = true;
    for (const Label& l : labels) valid = valid && IsValidUtf8(l.name) && IsValidUtf8(l.value);
    if (valid) return FormatLabels(labels);
  }
  // Each label gets a share of the budget; the name keeps more of it.
  std::string out = Abbreviate(MetricName(labels), max_bytes / 4);
  out += '{';
  size_t shown = 0;
  for (const Label& l : labels) {
    if (l.name == kMetricNameLabel) continue;
    if (out.size() >= max_bytes) break;
    if (shown++ > 0) out += ", ";
    out += Abbreviate(l.name, 32);
    out += "=\"";
    out += Abbreviate(l.value, 48);
    out += '"';
  }
  size_t others = labels.size() - (MetricName(labels).empty() ? 0 : 1) - shown;
  if (others > 0) out += ", ...(" + std::to_string(others) + " more labels)";
  out += '}';
  return out;
}

absl::Status Canonicalize(Labels& labels) {
  std::sort(labels.begin(), labels.end(), [](const Label& a, const Label& b) { return a.name < b.name; });
  for (size_t i = 1; i < labels.size(); ++i) {
    if (labels[i].name == labels[i - 1].name) {
      return absl::InvalidArgumentError("duplicate label name \"" + labels[i].name + "\"");
    }
  }
  return absl::OkStatus();
}

std::string_view MetricName(const Labels& labels) {
  for (const Label& l : labels) {
    if (l.name == kMetricNameLabel) return l.value;
  }
  return {};
}

std::string QuoteLabelValue(std::string_view value) {
  std::string out = "\"";
  for (char c : value) {
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

std::string FormatLabels(const Labels& labels) {
  std::string out(MetricName(labels));
  out += '{';
  bool first = true;
  for (const Label& l : labels) {
    if (l.name == kMetricNameLabel) continue;
    if (!first) out += ", ";
    first = false;
    out += l.name;
    out += '=';
    out += QuoteLabelValue(l.value);
  }
  out += '}';
  return out;
}

}  // namespace sheaf::model
