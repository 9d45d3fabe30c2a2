// The filesystem collector: size, free space and inodes of every real mount
// point, from the mounts file and statvfs(3).
#include <sys/statvfs.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "agent/collectors/collectors.h"
#include "agent/collectors/proc_text.h"
#include "fmt/format.h"

namespace sheaf::agent {

namespace {

class FilesystemCollector : public Collector {
 public:
  FilesystemCollector(std::string mounts, std::string rootfs) : mounts_(std::move(mounts)), rootfs_(std::move(rootfs)) {
    while (!rootfs_.empty() && rootfs_.back() == '/') rootfs_.pop_back();  // "/" and "" are the same
  }

  std::string_view name() const override { return "filesystem"; }

  bool Collect(SourceReader& reader, std::vector<HostMetric>* out, std::vector<std::string>* errors) override {
    const std::string* text = proc_text::ReadOrReport(reader, mounts_, errors);
    if (text == nullptr) return false;
    for (const MountEntry& m : SelectMounts(ParseMounts(*text, mounts_, errors))) Export(m, rootfs_, out, errors);
    return true;
  }

 private:
  static void Export(const MountEntry& m, const std::string& rootfs, std::vector<HostMetric>* out,
                     std::vector<std::string>* errors) {
    auto add = [&](std::string_view name, double value) {
      proc_text::Emit(out, name, {{"device", m.device}, {"fstype", m.fstype}, {"mountpoint", m.mount_point}},
                      MetricKind::kGauge, value);
    };
    add("node_filesystem_readonly", m.read_only ? 1 : 0);
    struct statvfs st {};
    const std::string path = rootfs + m.mount_point;
    if (::statvfs(path.c_str(), &st) != 0) {
      // As node_exporter: the mount point stays visible, flagged, without
      // sizes that would be made up.
      proc_text::AddError(errors, fmt::format("statvfs({}) for {} ({}): {}", path, m.device, m.fstype,
                                              proc_text::ErrnoText(errno)));
      add("node_filesystem_device_error", 1);
      return;
    }
    add("node_filesystem_device_error", 0);
    // f_frsize is the unit of the block counts; some old filesystems leave
    // it 0 and count in f_bsize.
    const double block = static_cast<double>(st.f_frsize != 0 ? st.f_frsize : st.f_bsize);
    add("node_filesystem_size_bytes", static_cast<double>(st.f_blocks) * block);
    add("node_filesystem_free_bytes", static_cast<double>(st.f_bfree) * block);
    add("node_filesystem_avail_bytes", static_cast<double>(st.f_bavail) * block);
    add("node_filesystem_files", static_cast<double>(st.f_files));
    add("node_filesystem_files_free", static_cast<double>(st.f_ffree));
  }

  const std::string mounts_;
  std::string rootfs_;  // without a trailing '/'
};

bool HasOption(std::string_view options, std::string_view option) {
  while (!options.empty()) {
    const size_t comma = options.find(',');
    if (options.substr(0, comma) == option) return true;
    if (comma == std::string_view::npos) break;
    options.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

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
  proc_text::LineProblems problems(source);
  std::vector<std::string_view> fields;

  proc_text::ForEachLine(text, problems, [&](int line_number, std::string_view line) {
    proc_text::SplitFields(line, &fields);
    if (fields.empty()) return;
    // device mountpoint fstype options [freq passno]
    if (fields.size() < 4) {
      problems.Add(line_number, "malformed mounts line");
      return;
    }
    MountEntry entry{UnescapeMountField(fields[0]), UnescapeMountField(fields[1]), UnescapeMountField(fields[2]),
                     HasOption(fields[3], "ro")};
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
  // ^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|
  //   overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$, sorted.
  static constexpr std::array<std::string_view, 24> kPseudo = {
      "autofs",   "binfmt_misc", "bpf",        "cgroup",     "cgroup2",   "configfs", "debugfs", "devpts",
      "devtmpfs", "fusectl",     "hugetlbfs",  "iso9660",    "mqueue",    "nsfs",     "overlay", "proc",
      "procfs",   "pstore",      "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs",   "tracefs"};
  static_assert(std::is_sorted(kPseudo.begin(), kPseudo.end()));
  return std::binary_search(kPseudo.begin(), kPseudo.end(), fstype);
}

bool IsIgnoredMountPoint(std::string_view mount_point) {
  // /dev, /proc, /sys and everything under them ("/devices" is not under
  // "/dev").
  static constexpr std::array<std::string_view, 3> kTrees = {"/dev", "/proc", "/sys"};
  for (const std::string_view tree : kTrees) {
    if (mount_point.starts_with(tree) && (mount_point.size() == tree.size() || mount_point[tree.size()] == '/')) {
      return true;
    }
  }
  // Everything strictly under these (".+"), not the directories themselves.
  static constexpr std::array<std::string_view, 3> kBelow = {"/run/credentials/", "/var/lib/docker/",
                                                             "/var/lib/containers/storage/"};
  for (const std::string_view dir : kBelow) {
    if (mount_point.size() > dir.size() && mount_point.starts_with(dir)) return true;
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
    if (last[m.mount_point] != i || IsIgnoredFilesystemType(m.fstype) || IsIgnoredMountPoint(m.mount_point)) continue;
    out.push_back(std::move(m));
  }
  return out;
}

std::unique_ptr<Collector> NewFilesystemCollector(const HostPaths& paths) {
  return std::make_unique<FilesystemCollector>(paths.mounts, paths.rootfs);
}

}  // namespace sheaf::agent
