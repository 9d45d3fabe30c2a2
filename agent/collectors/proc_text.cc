#include "agent/collectors/proc_text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>
#include <system_error>
#include <utility>

#include "fmt/format.h"

namespace sheaf::agent::proc_text {

void AddError(std::vector<std::string>* errors, std::string message) {
  if (errors != nullptr) errors->push_back(std::move(message));
}

void Emit(std::vector<HostMetric>* out, std::string_view name, Labels labels, MetricKind kind, double value) {
  std::stable_sort(labels.begin(), labels.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  out->push_back(HostMetric{std::string(name), std::move(labels), kind, value});
}

void LineProblems::Add(int line_number, std::string what) {
  if (count_++ == 0) {
    first_line_ = line_number;
    first_what_ = std::move(what);
  }
}

void LineProblems::Report(std::vector<std::string>* errors) const {
  if (count_ == 0) return;
  std::string message = fmt::format("{}:{}: {}; line skipped", source_, first_line_, first_what_);
  if (count_ > 1) message += fmt::format(" ({} more malformed line(s) skipped)", count_ - 1);
  AddError(errors, std::move(message));
}

namespace {
bool IsSpace(char c) { return c == ' ' || c == '\t'; }
}  // namespace

void SplitFields(std::string_view line, std::vector<std::string_view>* fields) {
  fields->clear();
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && IsSpace(line[i])) ++i;
    const size_t start = i;
    while (i < line.size() && !IsSpace(line[i])) ++i;
    if (i > start) fields->push_back(line.substr(start, i - start));
  }
}

bool RequireFound(bool found, std::string_view source, std::string_view what, std::vector<std::string>* errors) {
  if (!found) AddError(errors, fmt::format("{}: no {} found", source, what));
  return found;
}

const std::string* ReadOrReport(SourceReader& reader, const std::string& path, std::vector<std::string>* errors) {
  std::string error;
  const std::string* text = reader.Read(path, &error);
  if (text == nullptr) AddError(errors, std::move(error));
  return text;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

bool IsDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

bool ParseU64Fields(const std::vector<std::string_view>& fields, size_t first, std::vector<uint64_t>* out) {
  out->clear();
  for (size_t i = first; i < fields.size(); ++i) {
    uint64_t v = 0;
    if (!ParseU64(fields[i], &v)) return false;
    out->push_back(v);
  }
  return true;
}

bool ParseNonNegativeDouble(std::string_view s, double* out) {
  if (s.empty()) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size() && std::isfinite(*out) && *out >= 0.0;
}

bool IsMetricNameSuffix(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string ErrnoText(int err) {
  // std::system_category().message is the thread-safe strerror.
  return std::system_category().message(err);
}

namespace {

class FileCollector : public Collector {
 public:
  FileCollector(std::string name, std::string path, FileParser parse)
      : name_(std::move(name)), path_(std::move(path)), parse_(std::move(parse)) {}

  std::string_view name() const override { return name_; }

  bool Collect(SourceReader& reader, std::vector<HostMetric>* out, std::vector<std::string>* errors) override {
    const std::string* text = ReadOrReport(reader, path_, errors);
    return text != nullptr && parse_(*text, path_, out, errors);
  }

 private:
  const std::string name_;
  const std::string path_;
  const FileParser parse_;
};

}  // namespace

std::unique_ptr<Collector> MakeFileCollector(std::string name, std::string path, FileParser parse) {
  return std::make_unique<FileCollector>(std::move(name), std::move(path), std::move(parse));
}

}  // namespace sheaf::agent::proc_text
