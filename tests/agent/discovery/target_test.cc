// --daemon target forms and their errors.
#include "agent/discovery/target.h"

#include <gtest/gtest.h>

namespace sheaf::agent::discovery {
namespace {

using Kind = Target::Kind;

TEST(TargetTest, StaticListWithIpv6) {
  auto t = ParseTarget("10.0.0.1:7470,sheafd-2:7471,[::1]:7472");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->kind, Kind::kStatic);
  EXPECT_EQ(t->addresses, (std::vector<std::string>{"10.0.0.1:7470", "sheafd-2:7471", "[::1]:7472"}));
}

TEST(TargetTest, DnsForms) {
  for (const char* text : {"dns:///sheafd.example:7470", "dns:sheafd.example:7470"}) {
    auto t = ParseTarget(text);
    ASSERT_TRUE(t.ok()) << text << ": " << t.status();
    EXPECT_EQ(t->kind, Kind::kDns);
    EXPECT_EQ(t->host, "sheafd.example");
    EXPECT_EQ(t->port, 7470);
  }
  auto v6 = ParseTarget("dns:///[::1]:7470");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
}

TEST(TargetTest, FileAndEtcd) {
  auto f = ParseTarget("file:///etc/sheaf/daemons.yaml");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->kind, Kind::kFile);
  EXPECT_EQ(f->path, "/etc/sheaf/daemons.yaml");

  auto e = ParseTarget("etcd://127.0.0.1:2379,etcd-2:2379/prod/sheafd/");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->kind, Kind::kEtcd);
  EXPECT_EQ(e->addresses, (std::vector<std::string>{"127.0.0.1:2379", "etcd-2:2379"}));
  EXPECT_EQ(e->prefix, "/prod/sheafd/");
  auto d = ParseTarget("etcd://127.0.0.1:2379");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->prefix, kDefaultEtcdPrefix);
}

TEST(TargetTest, ErrorsNameTheTargetAndTheForms) {
  for (const char* text : {"", "sheafd", "sheafd:", "sheafd:0", "sheafd:70000", "::1:7470", "a:1,,b:2",
                           "dns://8.8.8.8/sheafd:7470", "dns:///sheafd", "file:relative.yaml", "file://host/x.yaml",
                           "etcd:///prefix", "http://sheafd:7470", "[::1]7470"}) {
    auto t = ParseTarget(text);
    ASSERT_FALSE(t.ok()) << "accepted: " << text;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    std::string message(t.status().message());
    EXPECT_NE(message.find(std::string("\"") + text + "\""), std::string::npos) << message;
    EXPECT_NE(message.find("accepted forms"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace sheaf::agent::discovery
