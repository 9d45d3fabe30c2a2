// Helpers the host collectors share to turn kernel text files into metrics:
// line and field splitting without allocation per line, whole-token number
// parsing, one summarised error line per damaged file, and a collector made
// of one file and a parser. Internal to agent/collectors/.
//
// Line rules shared by all parsers: the kernel terminates every line with
// '\n', so a final line without one is treated as truncated and skipped (a
// cut-off number would otherwise be exported as a plausible wrong value).
// Lines with too few fields or non-numeric values where numbers belong are
// skipped. Unknown but well-formed lines (keys added by newer kernels) are
// ignored silently.
#ifndef SHEAF_AGENT_COLLECTORS_PROC_TEXT_H_
#define SHEAF_AGENT_COLLECTORS_PROC_TEXT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/collectors/collector.h"
#include "agent/collectors/metric.h"

namespace sheaf::agent::proc_text {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Appends `message` to *errors unless errors is nullptr.
void AddError(std::vector<std::string>* errors, std::string message);

// Appends a metric; sorts `labels` by name (the HostMetric contract, kept in
// one place rather than trusted to each call site).
void Emit(std::vector<HostMetric>* out, std::string_view name, Labels labels, MetricKind kind, double value);

// Collects per-line problems of one file and reports them as a single error
// line, so a corrupt file yields one readable message instead of thousands.
class LineProblems {
 public:
  explicit LineProblems(std::string_view source) : source_(source) {}

  void Add(int line_number, std::string what);
  bool any() const { return count_ > 0; }
  // "<source>:<line>: <what>; line skipped (N more malformed line(s) skipped)"
  void Report(std::vector<std::string>* errors) const;

 private:
  std::string_view source_;
  int count_ = 0;
  int first_line_ = 0;
  std::string first_what_;
};

// Calls fn(line_number, line) for every '\n'-terminated line. A trailing
// unterminated line is reported as truncated rather than parsed.
template <typename Fn>
void ForEachLine(std::string_view text, LineProblems& problems, Fn&& fn) {
  int line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const size_t end = text.find('\n');
    if (end == std::string_view::npos) {
      problems.Add(line_number, "truncated line (no terminating newline)");
      return;
    }
    fn(line_number, text.substr(0, end));
    text.remove_prefix(end + 1);
  }
}

// Splits on blanks and tabs into *fields (cleared first; its capacity is
// reused from line to line).
void SplitFields(std::string_view line, std::vector<std::string_view>* fields);

// The loop of most parsers: calls fn(line_number, fields, problems) for every
// non-blank '\n'-terminated line of `text` split into fields, then reports
// the problems fn and the truncation rule found as one error line. Returns
// true when there were none.
template <typename Fn>
bool ForEachFieldLine(std::string_view text, std::string_view source, std::vector<std::string>* errors, Fn&& fn) {
  LineProblems problems(source);
  std::vector<std::string_view> fields;
  ForEachLine(text, problems, [&](int line_number, std::string_view line) {
    SplitFields(line, &fields);
    if (!fields.empty()) fn(line_number, static_cast<const std::vector<std::string_view>&>(fields), problems);
  });
  problems.Report(errors);
  return !problems.any();
}

// Returns `found`; when false, first appends "<source>: no <what> found".
bool RequireFound(bool found, std::string_view source, std::string_view what, std::vector<std::string>* errors);

// The content of `path` for this round, or nullptr after appending the
// reader's error line to *errors.
const std::string* ReadOrReport(SourceReader& reader, const std::string& path, std::vector<std::string>* errors);

std::string_view Trim(std::string_view s);
bool IsDigits(std::string_view s);

// Whole-token parses: "12abc" and "-1" are rejected, not read as 12 or
// wrapped around.
bool ParseU64(std::string_view s, uint64_t* out);
// Parses fields[first..] into *out (cleared first); false if any is not one.
bool ParseU64Fields(const std::vector<std::string_view>& fields, size_t first, std::vector<uint64_t>* out);
// Finite and >= 0.
bool ParseNonNegativeDouble(std::string_view s, double* out);

// [a-zA-Z0-9_]+: what may follow "node_memory_" in a metric name.
bool IsMetricNameSuffix(std::string_view s);

// strerror, thread-safe.
std::string ErrnoText(int err);

// A collector that reads one file and parses it. `parse` gets the content and
// the path (for error lines), appends metrics, and returns false when nothing
// usable was in the file.
using FileParser = std::function<bool(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
                                      std::vector<std::string>* errors)>;
std::unique_ptr<Collector> MakeFileCollector(std::string name, std::string path, FileParser parse);

}  // namespace sheaf::agent::proc_text

#endif  // SHEAF_AGENT_COLLECTORS_PROC_TEXT_H_
