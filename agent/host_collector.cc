#include "agent/host_collector.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sheaf::agent {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Refuse to slurp anything bigger: real /proc sources are at most a few
// hundred KiB (mounts on a busy container host), and a misconfigured path
// must not make the agent allocate without bound.
constexpr size_t kMaxFileBytes = 16 << 20;

// Conventional USER_HZ; only used if sysconf cannot tell us.
constexpr double kDefaultTicksPerSecond = 100.0;

// The kernel reports disk sectors in 512-byte units whatever the device's
// real sector size, and node_exporter multiplies by exactly this.
constexpr double kDiskSectorBytes = 512.0;

constexpr double kMillisecondsPerSecond = 1000.0;

void AddError(std::vector<std::string>* errors, std::string message) {
  if (errors != nullptr) errors->push_back(std::move(message));
}

HostMetric MakeMetric(std::string name, Labels labels, MetricKind kind, double value) {
  // Sorting here rather than trusting each call site keeps the "labels
  // sorted by name" contract in one place.
  std::stable_sort(labels.begin(), labels.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return HostMetric{std::move(name), std::move(labels), kind, value};
}

// Collects per-line problems of one file and reports them as a single error
// line, so a corrupt file yields one readable message instead of thousands.
class LineProblems {
 public:
  explicit LineProblems(std::string_view source) : source_(source) {}

  void Add(int line_number, std::string what) {
    if (count_++ == 0) {
      first_line_ = line_number;
      first_what_ = std::move(what);
    }
  }

  void Report(std::vector<std::string>* errors) const {
    if (count_ == 0) return;
    std::string message = source_ + ":" + std::to_string(first_line_) + ": " + first_what_ + "; line skipped";
    if (count_ > 1) {
      message += " (" + std::to_string(count_ - 1) + " more malformed line(s) skipped)";
    }
    AddError(errors, std::move(message));
  }

 private:
  std::string source_;
  int count_ = 0;
  int first_line_ = 0;
  std::string first_what_;
};

// Calls fn(line_number, line) for every '\n'-terminated line. A trailing
// unterminated line is reported as truncated rather than parsed: see the
// header for why.
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

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && IsSpace(line[i])) ++i;
    const size_t start = i;
    while (i < line.size() && !IsSpace(line[i])) ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

bool IsDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Whole-token parse: "12abc" and "-1" are rejected, not read as 12 or wrapped.
bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// Parses fields[first..] as unsigned integers; false if any is not one.
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

// Reads a whole regular file. /proc files report st_size 0, so this reads
// until EOF instead of trusting the size.
bool ReadFile(const std::string& path, std::string* content, std::string* error) {
  // O_NONBLOCK so that a FIFO at the path cannot hang open(); it has no
  // effect on regular files.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    *error = path + ": cannot open: " + ErrnoText(errno);
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    *error = path + ": cannot stat: " + ErrnoText(errno);
    ::close(fd);
    return false;
  }
  // Devices such as /dev/zero never reach EOF.
  if (!S_ISREG(st.st_mode)) {
    *error = path + ": not a regular file";
    ::close(fd);
    return false;
  }
  content->clear();
  std::array<char, 16384> buffer;
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      *error = path + ": read failed: " + ErrnoText(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    if (content->size() + static_cast<size_t>(n) > kMaxFileBytes) {
      *error = path + ": larger than " + std::to_string(kMaxFileBytes) + " bytes, not read";
      ::close(fd);
      return false;
    }
    content->append(buffer.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return true;
}

// Runs one source so that a failure in it (in practice only bad_alloc) costs
// that source, not the whole scrape, and Collect keeps its no-throw promise.
template <typename Fn>
void RunSource(std::string_view source, std::vector<std::string>* errors, Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    AddError(errors, std::string(source) + ": collection failed: " + e.what());
  } catch (...) {
    AddError(errors, std::string(source) + ": collection failed");
  }
}

// Reads `path` and appends what `parse` makes of it to *out.
template <typename Parse>
void CollectFile(const std::string& path, std::vector<HostMetric>* out, std::vector<std::string>* errors,
                 Parse&& parse) {
  RunSource(path, errors, [&] {
    std::string content;
    std::string error;
    if (!ReadFile(path, &content, &error)) {
      AddError(errors, std::move(error));
      return;
    }
    std::vector<HostMetric> metrics = parse(content, path, errors);
    out->insert(out->end(), std::make_move_iterator(metrics.begin()), std::make_move_iterator(metrics.end()));
  });
}

std::vector<HostMetric> FilesystemMetrics(const std::vector<MountEntry>& mounts, std::vector<std::string>* errors) {
  std::vector<HostMetric> out;
  for (const MountEntry& m : mounts) {
    struct statvfs st {};
    if (::statvfs(m.mount_point.c_str(), &st) != 0) {
      AddError(errors, "statvfs(" + m.mount_point + ") for " + m.device + " (" + m.fstype + "): " + ErrnoText(errno));
      continue;
    }
    // f_frsize is the unit of the block counts; some old filesystems leave
    // it 0 and count in f_bsize.
    const double block = static_cast<double>(st.f_frsize != 0 ? st.f_frsize : st.f_bsize);
    const Labels labels = {{"device", m.device}, {"fstype", m.fstype}, {"mountpoint", m.mount_point}};
    auto add = [&](const char* name, double value) {
      out.push_back(MakeMetric(name, labels, MetricKind::kGauge, value));
    };
    add("node_filesystem_size_bytes", static_cast<double>(st.f_blocks) * block);
    add("node_filesystem_free_bytes", static_cast<double>(st.f_bfree) * block);
    add("node_filesystem_avail_bytes", static_cast<double>(st.f_bavail) * block);
    add("node_filesystem_files", static_cast<double>(st.f_files));
    add("node_filesystem_files_free", static_cast<double>(st.f_ffree));
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// Parsers.
// ---------------------------------------------------------------------------

std::vector<HostMetric> ParseProcStat(std::string_view text, std::string_view source, double ticks_per_second,
                                      std::vector<std::string>* errors) {
  // Order of the first eight columns of a "cpuN" line. guest and guest_nice
  // follow; like node_exporter we neither export them here nor subtract them
  // from user/nice.
  static constexpr std::array<std::string_view, 8> kCpuModes = {"user",   "nice", "system",  "idle",
                                                                "iowait", "irq",  "softirq", "steal"};

  std::vector<HostMetric> out;
  LineProblems problems(source);
  bool saw_cpu = false;
  std::vector<uint64_t> values;

  ForEachLine(text, problems, [&](int line_number, std::string_view line) {
    const std::vector<std::string_view> fields = SplitFields(line);
    if (fields.empty()) return;
    const std::string_view key = fields[0];

    if (key == "cpu") return;  // Host-wide sum; per-cpu lines carry the data.
    if (key.size() > 3 && key.substr(0, 3) == "cpu" && IsDigits(key.substr(3))) {
      if (fields.size() < 1 + kCpuModes.size() || !ParseU64Fields(fields, 1, &values)) {
        problems.Add(line_number, "malformed " + std::string(key) + " line");
        return;
      }
      saw_cpu = true;
      const std::string cpu(key.substr(3));
      for (size_t i = 0; i < kCpuModes.size(); ++i) {
        out.push_back(MakeMetric("node_cpu_seconds_total", {{"cpu", cpu}, {"mode", std::string(kCpuModes[i])}},
                                 MetricKind::kCounter, static_cast<double>(values[i]) / ticks_per_second));
      }
      return;
    }

    struct Scalar {
      std::string_view key;
      const char* name;
      MetricKind kind;
    };
    static constexpr std::array<Scalar, 6> kScalars = {{
        {"ctxt", "node_context_switches_total", MetricKind::kCounter},
        // "intr" is followed by per-irq counts; only the total is exported.
        {"intr", "node_intr_total", MetricKind::kCounter},
        {"processes", "node_forks_total", MetricKind::kCounter},
        {"procs_running", "node_procs_running", MetricKind::kGauge},
        {"procs_blocked", "node_procs_blocked", MetricKind::kGauge},
        {"btime", "node_boot_time_seconds", MetricKind::kGauge},
    }};
    for (const Scalar& s : kScalars) {
      if (key != s.key) continue;
      uint64_t v = 0;
      // Single-valued keys must have exactly one value; anything else means
      // the line is not what we think it is.
      const bool shape_ok = key == "intr" ? fields.size() >= 2 : fields.size() == 2;
      if (!shape_ok || !ParseU64(fields[1], &v)) {
        problems.Add(line_number, "malformed " + std::string(key) + " line");
        return;
      }
      out.push_back(MakeMetric(s.name, {}, s.kind, static_cast<double>(v)));
      return;
    }
    // Other keys (softirq, newer additions) are not exported.
  });

  problems.Report(errors);
  if (!saw_cpu) AddError(errors, std::string(source) + ": no per-cpu lines found");
  return out;
}

std::vector<HostMetric> ParseMeminfo(std::string_view text, std::string_view source, std::vector<std::string>* errors) {
  std::vector<HostMetric> out;
  LineProblems problems(source);

  ForEachLine(text, problems, [&](int line_number, std::string_view line) {
    const std::vector<std::string_view> fields = SplitFields(line);
    if (fields.empty()) return;
    uint64_t v = 0;
    if (fields.size() < 2 || fields.size() > 3 || fields[0].size() < 2 || fields[0].back() != ':' ||
        !ParseU64(fields[1], &v) || (fields.size() == 3 && fields[2] != "kB")) {
      problems.Add(line_number, "malformed meminfo line");
      return;
    }
    // node_exporter renames "Active(anon)" to "Active_anon" (its regex
    // \((.*)\) -> _$1); matching it keeps existing queries working.
    std::string key(fields[0].substr(0, fields[0].size() - 1));
    const size_t open = key.find('(');
    const size_t close = key.rfind(')');
    if (open != std::string::npos && close != std::string::npos && open < close) {
      key = key.substr(0, open) + "_" + key.substr(open + 1, close - open - 1) + key.substr(close + 1);
    }
    if (!IsMetricNameSuffix(key)) {
      problems.Add(line_number, "meminfo key is not a valid metric name");
      return;
    }
    if (fields.size() == 3) {
      out.push_back(
          MakeMetric("node_memory_" + key + "_bytes", {}, MetricKind::kGauge, static_cast<double>(v) * 1024.0));
    } else {
      // Unitless counts such as HugePages_Total.
      out.push_back(MakeMetric("node_memory_" + key, {}, MetricKind::kGauge, static_cast<double>(v)));
    }
  });

  problems.Report(errors);
  return out;
}

std::vector<HostMetric> ParseLoadavg(std::string_view text, std::string_view source, std::vector<std::string>* errors) {
  std::vector<HostMetric> out;
  LineProblems problems(source);
  bool seen = false;

  ForEachLine(text, problems, [&](int line_number, std::string_view line) {
    const std::vector<std::string_view> fields = SplitFields(line);
    if (fields.empty()) return;
    std::array<double, 3> load{};
    if (seen || fields.size() < 3 || !ParseNonNegativeDouble(fields[0], &load[0]) ||
        !ParseNonNegativeDouble(fields[1], &load[1]) || !ParseNonNegativeDouble(fields[2], &load[2])) {
      problems.Add(line_number, "malformed loadavg line");
      return;
    }
    seen = true;
    out.push_back(MakeMetric("node_load1", {}, MetricKind::kGauge, load[0]));
    out.push_back(MakeMetric("node_load5", {}, MetricKind::kGauge, load[1]));
    out.push_back(MakeMetric("node_load15", {}, MetricKind::kGauge, load[2]));
  });

  problems.Report(errors);
  if (!seen) AddError(errors, std::string(source) + ": no load averages found");
  return out;
}

bool IsIgnoredDiskDevice(std::string_view device) {
  // Equivalent to ^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$ without
  // std::regex: every alternative ends in a non-digit, so the trailing \d+
  // is exactly the device's trailing run of digits.
  size_t digits_start = device.size();
  while (digits_start > 0 && device[digits_start - 1] >= '0' && device[digits_start - 1] <= '9') {
    --digits_start;
  }
  if (digits_start == device.size()) return false;  // \d+ needs a digit.
  const std::string_view prefix = device.substr(0, digits_start);

  if (prefix == "ram" || prefix == "loop" || prefix == "fd") return true;

  auto is_lower = [](char c) { return c >= 'a' && c <= 'z'; };
  // (h|s|v|xv)d[a-z]
  if (prefix.size() == 3 && (prefix[0] == 'h' || prefix[0] == 's' || prefix[0] == 'v') && prefix[1] == 'd' &&
      is_lower(prefix[2])) {
    return true;
  }
  if (prefix.size() == 4 && prefix.substr(0, 3) == "xvd" && is_lower(prefix[3])) {
    return true;
  }
  // nvme\d+n\d+p
  if (prefix.size() > 4 && prefix.substr(0, 4) == "nvme" && prefix.back() == 'p') {
    const std::string_view middle = prefix.substr(4, prefix.size() - 5);  // "\d+n\d+"
    const size_t n = middle.find('n');
    return n != std::string_view::npos && IsDigits(middle.substr(0, n)) && IsDigits(middle.substr(n + 1));
  }
  return false;
}

std::vector<HostMetric> ParseDiskstats(std::string_view text, std::string_view source,
                                       std::vector<std::string>* errors) {
  // Columns after major, minor and name (Documentation/admin-guide/iostats):
  //  0 reads completed   1 reads merged   2 sectors read   3 ms reading
  //  4 writes completed  5 writes merged  6 sectors written 7 ms writing
  //  8 I/Os in progress  9 ms doing I/O   10 weighted ms doing I/O
  constexpr size_t kNeededStats = 11;
  std::vector<HostMetric> out;
  LineProblems problems(source);
  std::vector<uint64_t> stats;

  ForEachLine(text, problems, [&](int line_number, std::string_view line) {
    const std::vector<std::string_view> fields = SplitFields(line);
    if (fields.empty()) return;
    uint64_t major = 0;
    uint64_t minor = 0;
    if (fields.size() < 3 + kNeededStats || !ParseU64(fields[0], &major) || !ParseU64(fields[1], &minor) ||
        !ParseU64Fields(fields, 3, &stats)) {
      problems.Add(line_number, "malformed diskstats line");
      return;
    }
    const std::string device(fields[2]);
    if (IsIgnoredDiskDevice(device)) return;

    const Labels labels = {{"device", device}};
    auto add = [&](const char* name, MetricKind kind, double value) {
      out.push_back(MakeMetric(name, labels, kind, value));
    };
    const auto v = [&](size_t i) { return static_cast<double>(stats[i]); };
    add("node_disk_reads_completed_total", MetricKind::kCounter, v(0));
    add("node_disk_read_bytes_total", MetricKind::kCounter, v(2) * kDiskSectorBytes);
    add("node_disk_read_time_seconds_total", MetricKind::kCounter, v(3) / kMillisecondsPerSecond);
    add("node_disk_writes_completed_total", MetricKind::kCounter, v(4));
    add("node_disk_written_bytes_total", MetricKind::kCounter, v(6) * kDiskSectorBytes);
    add("node_disk_write_time_seconds_total", MetricKind::kCounter, v(7) / kMillisecondsPerSecond);
    add("node_disk_io_now", MetricKind::kGauge, v(8));
    add("node_disk_io_time_seconds_total", MetricKind::kCounter, v(9) / kMillisecondsPerSecond);
  });

  problems.Report(errors);
  return out;
}

std::vector<HostMetric> ParseNetDev(std::string_view text, std::string_view source, std::vector<std::string>* errors) {
  // After "name:" come 8 receive columns (bytes packets errs drop fifo frame
  // compressed multicast) then 8 transmit columns (bytes packets errs drop
  // fifo colls carrier compressed).
  constexpr size_t kColumns = 16;
  constexpr size_t kTransmit = 8;
  std::vector<HostMetric> out;
  LineProblems problems(source);
  std::vector<uint64_t> values;

  ForEachLine(text, problems, [&](int line_number, std::string_view line) {
    if (Trim(line).empty()) return;
    // Header lines ("Inter-|   Receive ...", " face |bytes ...") are the only
    // ones with '|'; data lines never have it.
    if (line.find('|') != std::string_view::npos) return;
    // Interface names cannot contain ':' (dev_valid_name), so the first one
    // ends the name even when the kernel prints no space after it, as it
    // does once the byte count gets wide ("eth0:1234567890 ...").
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      problems.Add(line_number, "malformed net/dev line (no ':')");
      return;
    }
    const std::string_view device = Trim(line.substr(0, colon));
    const std::vector<std::string_view> fields = SplitFields(line.substr(colon + 1));
    if (device.empty() || SplitFields(device).size() != 1 || fields.size() < kColumns ||
        !ParseU64Fields(fields, 0, &values)) {
      problems.Add(line_number, "malformed net/dev line");
      return;
    }
    const Labels labels = {{"device", std::string(device)}};
    auto add = [&](const char* name, size_t column) {
      out.push_back(MakeMetric(name, labels, MetricKind::kCounter, static_cast<double>(values[column])));
    };
    add("node_network_receive_bytes_total", 0);
    add("node_network_receive_packets_total", 1);
    add("node_network_receive_errs_total", 2);
    add("node_network_receive_drop_total", 3);
    add("node_network_transmit_bytes_total", kTransmit + 0);
    add("node_network_transmit_packets_total", kTransmit + 1);
    add("node_network_transmit_errs_total", kTransmit + 2);
    add("node_network_transmit_drop_total", kTransmit + 3);
  });

  problems.Report(errors);
  return out;
}

std::string UnescapeMountField(std::string_view field) {
  auto is_octal = [](char c) { return c >= '0' && c <= '7'; };
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && is_octal(field[i + 1]) && is_octal(field[i + 2]) &&
        is_octal(field[i + 3])) {
      const int value = (field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0');
      // "\400".."\777" do not fit a byte and the kernel never writes them.
      if (value <= 0xff) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

std::vector<MountEntry> ParseMounts(std::string_view text, std::string_view source, std::vector<std::string>* errors) {
  std::vector<MountEntry> out;
  LineProblems problems(source);

  ForEachLine(text, problems, [&](int line_number, std::string_view line) {
    const std::vector<std::string_view> fields = SplitFields(line);
    if (fields.empty()) return;
    // device mountpoint fstype options [freq passno]
    if (fields.size() < 4) {
      problems.Add(line_number, "malformed mounts line");
      return;
    }
    MountEntry entry{UnescapeMountField(fields[0]), UnescapeMountField(fields[1]), UnescapeMountField(fields[2])};
    if (entry.mount_point.empty() || entry.mount_point.front() != '/') {
      problems.Add(line_number, "mount point is not an absolute path");
      return;
    }
    out.push_back(std::move(entry));
  });

  problems.Report(errors);
  return out;
}

bool IsIgnoredFilesystemType(std::string_view fstype) {
  // node_exporter's default --collector.filesystem.fs-types-exclude, sorted.
  static constexpr std::array<std::string_view, 24> kPseudo = {
      "autofs",   "binfmt_misc", "bpf",        "cgroup",     "cgroup2",   "configfs", "debugfs", "devpts",
      "devtmpfs", "fusectl",     "hugetlbfs",  "iso9660",    "mqueue",    "nsfs",     "overlay", "proc",
      "procfs",   "pstore",      "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs",   "tracefs"};
  static_assert(std::is_sorted(kPseudo.begin(), kPseudo.end()));
  return std::binary_search(kPseudo.begin(), kPseudo.end(), fstype);
}

bool IsIgnoredMountPoint(std::string_view mount_point) {
  static constexpr std::array<std::string_view, 5> kPrefixes = {"/dev", "/proc", "/sys", "/run/credentials",
                                                                "/var/lib/docker"};
  for (const std::string_view prefix : kPrefixes) {
    // Component-wise: "/devices" is not under "/dev".
    if (mount_point.substr(0, prefix.size()) == prefix &&
        (mount_point.size() == prefix.size() || mount_point[prefix.size()] == '/')) {
      return true;
    }
  }
  return false;
}

std::vector<MountEntry> SelectMounts(std::vector<MountEntry> mounts) {
  // Deduplicate before filtering: if the last mount at a path is a pseudo
  // filesystem, that is what statvfs would see, so the path is dropped rather
  // than reported under an earlier, hidden mount's device and type.
  std::unordered_map<std::string, size_t> last;
  for (size_t i = 0; i < mounts.size(); ++i) last[mounts[i].mount_point] = i;
  std::vector<MountEntry> out;
  for (size_t i = 0; i < mounts.size(); ++i) {
    MountEntry& m = mounts[i];
    if (last[m.mount_point] != i) continue;
    if (IsIgnoredFilesystemType(m.fstype) || IsIgnoredMountPoint(m.mount_point)) {
      continue;
    }
    out.push_back(std::move(m));
  }
  return out;
}

// ---------------------------------------------------------------------------
// HostCollector.
// ---------------------------------------------------------------------------

HostCollector::HostCollector(HostPaths paths) : paths_(std::move(paths)), ticks_per_second_(kDefaultTicksPerSecond) {
  const long ticks = ::sysconf(_SC_CLK_TCK);
  if (ticks > 0) ticks_per_second_ = static_cast<double>(ticks);
}

std::vector<HostMetric> HostCollector::Collect(std::vector<std::string>* errors) const {
  std::vector<HostMetric> out;
  const std::string& proc = paths_.proc;

  CollectFile(proc + "/stat", &out, errors,
              [this](std::string_view text, std::string_view source, std::vector<std::string>* errs) {
                return ParseProcStat(text, source, ticks_per_second_, errs);
              });
  CollectFile(proc + "/meminfo", &out, errors, ParseMeminfo);
  CollectFile(proc + "/loadavg", &out, errors, ParseLoadavg);
  CollectFile(proc + "/diskstats", &out, errors, ParseDiskstats);
  CollectFile(proc + "/net/dev", &out, errors, ParseNetDev);
  CollectFile(paths_.mounts, &out, errors,
              [](std::string_view text, std::string_view source, std::vector<std::string>* errs) {
                return FilesystemMetrics(SelectMounts(ParseMounts(text, source, errs)), errs);
              });
  return out;
}

}  // namespace sheaf::agent
