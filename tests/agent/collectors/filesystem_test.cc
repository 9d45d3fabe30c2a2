// Unit tests of the filesystem collector: mounts parsing and unescaping,
// node_exporter's exclusions, and statvfs on real directories.
#include <sys/statvfs.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "agent/collectors/collectors.h"
#include "tests/agent/collectors/test_util.h"

namespace sheaf::agent {
namespace {

using namespace collectors_test;  // NOLINT: test helpers

TEST(UnescapeMountFieldTest, UndoesOctalEscapes) {
  EXPECT_EQ(UnescapeMountField("/mnt/my\\040disk"), "/mnt/my disk");
  EXPECT_EQ(UnescapeMountField("/a\\011b\\012c\\134d"), "/a\tb\nc\\d");
  EXPECT_EQ(UnescapeMountField("/plain"), "/plain");
  // Not an escape: kept literally.
  EXPECT_EQ(UnescapeMountField("/x\\09y"), "/x\\09y");
  EXPECT_EQ(UnescapeMountField("trailing\\"), "trailing\\");
  EXPECT_EQ(UnescapeMountField("\\777"), "\\777");
}

TEST(IsIgnoredTest, PseudoFilesystemsAndSystemMountPoints) {
  for (const char* t :
       {"autofs",   "binfmt_misc", "bpf",        "cgroup",     "cgroup2",   "configfs", "debugfs", "devpts",
        "devtmpfs", "fusectl",     "hugetlbfs",  "iso9660",    "mqueue",    "nsfs",     "overlay", "proc",
        "procfs",   "pstore",      "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs",   "tracefs"}) {
    EXPECT_TRUE(IsIgnoredFilesystemType(t)) << t;
  }
  for (const char* t : {"ext4", "xfs", "btrfs", "tmpfs", "nfs4", "vfat", "zfs", "cgroup3", "proc2"}) {
    EXPECT_FALSE(IsIgnoredFilesystemType(t)) << t;
  }
  // ^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)
  for (const char* mp :
       {"/dev", "/dev/shm", "/proc", "/proc/sys/fs/binfmt_misc", "/sys", "/sys/fs/cgroup", "/run/credentials/x.service",
        "/var/lib/docker/overlay2/abc/merged", "/var/lib/containers/storage/overlay"}) {
    EXPECT_TRUE(IsIgnoredMountPoint(mp)) << mp;
  }
  for (const char* mp : {"/", "/devices", "/home", "/run", "/run/credentials", "/run/credentials/", "/var/lib/docker",
                         "/var/lib/dockerd", "/srv/sys", "/boot/efi", "/mnt", "/media/usb"}) {
    EXPECT_FALSE(IsIgnoredMountPoint(mp)) << mp;
  }
}

TEST(ParseMountsTest, ParsesAndUnescapesFieldsAndReadOnly) {
  Errors errors;
  const std::vector<MountEntry> mounts = ParseMounts(
      "/dev/sdb1 /media/usb\\040stick vfat rw,relatime 0 0\n"
      "server:/export\\040dir /mnt/nfs\\134share nfs4 ro,vers=4.2 0 0\n"
      "/dev/sdc /srv ext4 rw,errors=remount-ro 0 0\n",
      "mounts", &errors);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  ASSERT_EQ(mounts.size(), 3u);
  EXPECT_EQ(mounts[0].device, "/dev/sdb1");
  EXPECT_EQ(mounts[0].mount_point, "/media/usb stick");
  EXPECT_EQ(mounts[0].fstype, "vfat");
  EXPECT_FALSE(mounts[0].read_only);
  EXPECT_EQ(mounts[1].device, "server:/export dir");
  EXPECT_EQ(mounts[1].mount_point, "/mnt/nfs\\share");
  EXPECT_EQ(mounts[1].fstype, "nfs4");
  EXPECT_TRUE(mounts[1].read_only);
  EXPECT_FALSE(mounts[2].read_only);  // "remount-ro" is not "ro".
}

TEST(SelectMountsTest, KeepsLastEntryPerMountPointThenFilters) {
  const std::vector<MountEntry> selected = SelectMounts({
      {"/dev/vda1", "/data", "ext4"},
      {"/dev/vdb", "/", "ext4"},
      {"tmpfs", "/data", "tmpfs"},  // Shadows the ext4 mount at /data.
      {"overlay", "/", "overlay"},  // Shadows /; / is then ignored.
      {"/dev/vdc", "/srv", "xfs"},
  });
  ASSERT_EQ(selected.size(), 2u);
  EXPECT_EQ(selected[0].device, "tmpfs");
  EXPECT_EQ(selected[0].mount_point, "/data");
  EXPECT_EQ(selected[0].fstype, "tmpfs");
  EXPECT_EQ(selected[1].mount_point, "/srv");
}

class FilesystemCollectorTest : public FakeTree {
 protected:
  Metrics Collect(Errors* errors, bool* ok = nullptr) {
    auto collector = NewFilesystemCollector(paths_);
    EXPECT_EQ(collector->name(), "filesystem");
    return Run(*collector, errors, ok);
  }
};

TEST_F(FilesystemCollectorTest, UnescapesFiltersAndStatvfs) {
  const std::string real_dir = root_ + "/with space";
  std::filesystem::create_directories(real_dir);
  Write("mounts",
        "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
        "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n"
        "udev /dev devtmpfs rw,nosuid,relatime,size=8123456k,mode=755 0 0\n"
        "devpts /dev/pts devpts rw,nosuid,noexec,relatime,mode=620 0 0\n"
        "tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0\n"
        "/dev/vda1 / ext4 rw,relatime,errors=remount-ro 0 0\n"
        "securityfs /sys/kernel/security securityfs rw,relatime 0 0\n"
        "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"
        "bpf /bpffs bpf rw,relatime,mode=700 0 0\n"
        "systemd-1 /proc/sys/fs/binfmt_misc autofs rw,relatime,fd=30 0 0\n"
        "mqueue /mqueue mqueue rw,relatime 0 0\n"
        "/dev/loop3 /snap/core22/1033 squashfs ro,nodev,relatime 0 0\n"
        "/dev/vdb /var/lib/docker/overlay2 ext4 rw,relatime 0 0\n"
        "overlay /merged overlay rw,relatime,lowerdir=/l,upperdir=/u 0 0\n"
        "ramfs /run/credentials/systemd-sysctl.service ramfs ro,nosuid 0 0\n"
        "nsfs /netns nsfs rw 0 0\n"
        "tmpfs " +
            root_ + "/with\\040space tmpfs ro,nosuid,nodev,size=1024k 0 0\n");
  Errors errors;
  bool ok = false;
  const Metrics metrics = Collect(&errors, &ok);
  EXPECT_TRUE(ok);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);

  // Only "/" and the temp dir survive the pseudo-fs and mount point filters.
  std::set<std::string> mount_points;
  for (const HostMetric& m : metrics) mount_points.insert(m.labels.at(2).second);
  EXPECT_EQ(mount_points, (std::set<std::string>{"/", real_dir}));
  EXPECT_EQ(metrics.size(), 2u * 7u);

  const Labels labels = {{"device", "tmpfs"}, {"fstype", "tmpfs"}, {"mountpoint", real_dir}};
  struct statvfs st {};
  ASSERT_EQ(::statvfs(real_dir.c_str(), &st), 0);
  const double block = static_cast<double>(st.f_frsize ? st.f_frsize : st.f_bsize);
  EXPECT_TRUE(HasMetric(metrics, "node_filesystem_size_bytes", labels, MetricKind::kGauge,
                        static_cast<double>(st.f_blocks) * block));
  EXPECT_TRUE(HasMetric(metrics, "node_filesystem_files", labels, MetricKind::kGauge, static_cast<double>(st.f_files)));
  // From the mount options, not from statvfs: the mounts file says ro.
  EXPECT_TRUE(HasMetric(metrics, "node_filesystem_readonly", labels, MetricKind::kGauge, 1));
  EXPECT_TRUE(HasMetric(metrics, "node_filesystem_device_error", labels, MetricKind::kGauge, 0));
  const HostMetric* size = Find(metrics, "node_filesystem_size_bytes", labels);
  const HostMetric* free = Find(metrics, "node_filesystem_free_bytes", labels);
  const HostMetric* avail = Find(metrics, "node_filesystem_avail_bytes", labels);
  ASSERT_NE(size, nullptr);
  ASSERT_NE(free, nullptr);
  ASSERT_NE(avail, nullptr);
  EXPECT_GT(size->value, 0);
  EXPECT_LE(free->value, size->value);
  EXPECT_LE(avail->value, free->value);
  EXPECT_NE(Find(metrics, "node_filesystem_files_free", labels), nullptr);

  const Labels root = {{"device", "/dev/vda1"}, {"fstype", "ext4"}, {"mountpoint", "/"}};
  const HostMetric* root_size = Find(metrics, "node_filesystem_size_bytes", root);
  ASSERT_NE(root_size, nullptr);
  EXPECT_GT(root_size->value, 0);
  EXPECT_TRUE(HasMetric(metrics, "node_filesystem_readonly", root, MetricKind::kGauge, 0));
  for (const HostMetric& m : metrics) EXPECT_EQ(m.kind, MetricKind::kGauge);
  ExpectWellFormed(metrics);
}

TEST_F(FilesystemCollectorTest, StatvfsFailureIsFlaggedNotAStop) {
  const std::string missing = root_ + "/not-mounted-here";
  Write("mounts", "/dev/vdz " + missing + " ext4 ro,relatime 0 0\n" + "/dev/vda1 / ext4 rw,relatime 0 0\n");
  Errors errors;
  bool ok = false;
  const Metrics metrics = Collect(&errors, &ok);
  EXPECT_TRUE(ok);  // One mount point's problem, not the collector's.

  ASSERT_EQ(errors.size(), 1u) << ::testing::PrintToString(errors);
  EXPECT_NE(errors[0].find(missing), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("No such file or directory"), std::string::npos) << errors[0];

  // As node_exporter: device_error 1 and readonly, no made-up sizes.
  const Labels bad = {{"device", "/dev/vdz"}, {"fstype", "ext4"}, {"mountpoint", missing}};
  EXPECT_TRUE(HasMetric(metrics, "node_filesystem_device_error", bad, MetricKind::kGauge, 1));
  EXPECT_TRUE(HasMetric(metrics, "node_filesystem_readonly", bad, MetricKind::kGauge, 1));
  EXPECT_EQ(Find(metrics, "node_filesystem_size_bytes", bad), nullptr);
  EXPECT_EQ(Count(metrics, "node_filesystem_size_bytes"), 1u);
  EXPECT_NE(
      Find(metrics, "node_filesystem_size_bytes", {{"device", "/dev/vda1"}, {"fstype", "ext4"}, {"mountpoint", "/"}}),
      nullptr);
}

// In a container: the host's / is mounted at rootfs; its mount points are
// measured there and reported by their host paths.
TEST_F(FilesystemCollectorTest, MountPointsAreMeasuredUnderTheRootfs) {
  std::filesystem::create_directories(root_ + "/host/srv/data");
  Write("mounts", "/dev/vdc /srv/data ext4 rw,relatime 0 0\n");
  paths_.rootfs = root_ + "/host/";
  Errors errors;
  const Metrics metrics = Collect(&errors);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  const Labels labels = {{"device", "/dev/vdc"}, {"fstype", "ext4"}, {"mountpoint", "/srv/data"}};
  EXPECT_TRUE(HasMetric(metrics, "node_filesystem_device_error", labels, MetricKind::kGauge, 0));
  EXPECT_NE(Find(metrics, "node_filesystem_size_bytes", labels), nullptr);
  // Without it, /srv/data is looked up in this process' own filesystem.
  paths_.rootfs = "";
  errors.clear();
  const Metrics outside = Collect(&errors);
  EXPECT_TRUE(HasMetric(outside, "node_filesystem_device_error", labels, MetricKind::kGauge, 1));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("statvfs(/srv/data)"), std::string::npos) << errors[0];
}

TEST_F(FilesystemCollectorTest, DuplicateMountPointKeepsLastEntry) {
  Write("mounts",
        "/dev/vda1 " + root_ + " ext4 rw 0 0\n" + "/dev/vda1 / ext4 rw 0 0\n" + "tmpfs " + root_ + " tmpfs rw 0 0\n");
  Errors errors;
  const Metrics metrics = Collect(&errors);
  EXPECT_EQ(Count(metrics, "node_filesystem_size_bytes"), 2u);
  EXPECT_NE(
      Find(metrics, "node_filesystem_size_bytes", {{"device", "tmpfs"}, {"fstype", "tmpfs"}, {"mountpoint", root_}}),
      nullptr);
  EXPECT_EQ(
      Find(metrics, "node_filesystem_size_bytes", {{"device", "/dev/vda1"}, {"fstype", "ext4"}, {"mountpoint", root_}}),
      nullptr);
}

TEST_F(FilesystemCollectorTest, MissingMountsFileFails) {
  Errors errors;
  bool ok = true;
  EXPECT_TRUE(Collect(&errors, &ok).empty());
  EXPECT_FALSE(ok);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], paths_.mounts + ": cannot open: No such file or directory");
}

}  // namespace
}  // namespace sheaf::agent
