// etcd discovery end to end against Debian's etcd 3.4, started here on
// loopback: sheafd's registrar (daemon/etcd_registrar.h) on one side, the
// agent's etcd:// source (agent/discovery/etcd_source.h) and picker on the
// other. Registration, watch, revoke on clean shutdown, expiry of a daemon
// that died, re-registration after etcd lost its data, and real sheafd
// processes killed with SIGKILL and stopped with SIGTERM.
#include <signal.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <regex>

#include "agent/discovery/address_source.h"
#include "agent/discovery/daemon_picker.h"
#include "agent/discovery/rendezvous.h"
#include "daemon/etcd_registrar.h"
#include "tests/agent/discovery/etcd_fixture.h"
#include "tests/support/temp_dir.h"

namespace sheaf::agent::discovery {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using Strings = std::vector<std::string>;
using sheaf::daemon::EtcdRegistrar;
using sheaf::daemon::EtcdRegistrarOptions;

class EtcdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    etcd_ = sheaf::testing::EtcdServer::Start(dir_.Sub("etcd"), dir_.Sub("etcd.log"));
    ASSERT_NE(etcd_, nullptr);
  }

  std::unique_ptr<EtcdRegistrar> Register(const std::string& advertise, milliseconds ttl) {
    EtcdRegistrarOptions o;
    o.endpoints = {etcd_->endpoint()};
    o.prefix = kPrefix;
    o.advertise_address = advertise;
    o.lease_ttl = ttl;
    o.rpc_timeout = milliseconds(2000);
    o.retry_max = milliseconds(1000);
    auto r = EtcdRegistrar::Start(o);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return nullptr;
    EXPECT_TRUE((*r)->WaitRegistered(milliseconds(10000)));
    return *std::move(r);
  }

  std::unique_ptr<AddressSource> Watch() {
    auto target = ParseTarget("etcd://" + etcd_->endpoint() + kPrefix);
    EXPECT_TRUE(target.ok()) << target.status();
    SourceOptions o;
    o.etcd_retry_max = milliseconds(1000);
    o.etcd_rpc_timeout = milliseconds(2000);
    auto s = OpenAddressSource(*target, o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  // Waits until the source lists exactly `want`; the time it took, or -1.
  static int64_t WaitFor(const AddressSource& source, Strings want, milliseconds timeout) {
    std::sort(want.begin(), want.end());
    auto t0 = Clock::now();
    bool ok = sheaf::testing::WaitFor([&] { return source.Addresses() == want; }, timeout);
    EXPECT_TRUE(ok) << "want " << ::testing::PrintToString(want) << ", have "
                    << ::testing::PrintToString(source.Addresses()) << "; last error: " << source.stats().last_error;
    return ok ? std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count() : -1;
  }

  static constexpr char kPrefix[] = "/sheaf-test/daemons/";
  sheaf::testing::TempDir dir_;
  std::unique_ptr<sheaf::testing::EtcdServer> etcd_;
};

TEST_F(EtcdTest, RegistrarsAreWatchedAndRevokedAtOnce) {
  auto a = Register("127.0.0.1:7001", std::chrono::seconds(10));
  ASSERT_NE(a, nullptr);
  auto source = Watch();
  ASSERT_NE(source, nullptr);
  WaitFor(*source, {"127.0.0.1:7001"}, milliseconds(5000));  // from the Range

  auto b = Register("127.0.0.1:7002", std::chrono::seconds(10));
  ASSERT_NE(b, nullptr);
  WaitFor(*source, {"127.0.0.1:7001", "127.0.0.1:7002"}, milliseconds(5000));  // from the Watch
  EXPECT_EQ(etcd_->Keys(kPrefix).at(std::string(kPrefix) + "127.0.0.1:7002"), "127.0.0.1:7002");

  // A clean stop revokes: gone at once, not after the 10 s TTL.
  b->Stop();
  int64_t took = WaitFor(*source, {"127.0.0.1:7001"}, milliseconds(3000));
  EXPECT_GE(took, 0);
  EXPECT_LT(took, 2000);
  EXPECT_EQ(etcd_->Keys(kPrefix).size(), 1u);
}

TEST_F(EtcdTest, AbandonedRegistrationExpiresWithinItsTtl) {
  auto a = Register("127.0.0.1:7001", std::chrono::seconds(3));
  auto b = Register("127.0.0.1:7002", std::chrono::seconds(3));
  ASSERT_TRUE(a && b);
  auto source = Watch();
  ASSERT_NE(source, nullptr);
  WaitFor(*source, {"127.0.0.1:7001", "127.0.0.1:7002"}, milliseconds(5000));

  // Renewals keep the key past its TTL.
  std::this_thread::sleep_for(milliseconds(4000));
  EXPECT_EQ(source->Addresses().size(), 2u);
  EXPECT_GE(a->stats().renewals, 2u) << "renewed every TTL/3";

  // A daemon that dies: no revoke, the lease runs out.
  a->Abandon();
  auto t0 = Clock::now();
  WaitFor(*source, {"127.0.0.1:7002"}, milliseconds(8000));
  auto took = Clock::now() - t0;
  EXPECT_GE(took, milliseconds(500)) << "gone at once: was it revoked?";
  EXPECT_LE(took, milliseconds(3000 + 2000)) << "TTL + etcd's expiry check + renewal slack";
}

TEST_F(EtcdTest, ReRegistersAfterEtcdLosesItsData) {
  auto a = Register("127.0.0.1:7001", std::chrono::seconds(2));
  ASSERT_NE(a, nullptr);
  auto source = Watch();
  ASSERT_NE(source, nullptr);
  WaitFor(*source, {"127.0.0.1:7001"}, milliseconds(5000));

  // etcd dies and comes back empty on the same port: the lease is unknown,
  // the registrar grants a new one and puts its key again; the source
  // keeps its list meanwhile, then watches again.
  int port = etcd_->client_port();
  etcd_->Kill();
  etcd_.reset();
  std::this_thread::sleep_for(milliseconds(1000));
  EXPECT_EQ(source->Addresses(), Strings{"127.0.0.1:7001"}) << "kept while etcd is away";
  etcd_ = sheaf::testing::EtcdServer::Start(dir_.Sub("etcd-2"), dir_.Sub("etcd-2.log"), port);
  ASSERT_NE(etcd_, nullptr);
  ASSERT_TRUE(sheaf::testing::WaitFor([&] { return etcd_->Keys(kPrefix).size() == 1; }, milliseconds(15000)))
      << "not registered again";
  EXPECT_EQ(a->stats().registrations, 2u);
  EXPECT_GE(source->stats().errors, 1u);

  auto b = Register("127.0.0.1:7002", std::chrono::seconds(2));
  ASSERT_NE(b, nullptr);
  WaitFor(*source, {"127.0.0.1:7001", "127.0.0.1:7002"}, milliseconds(10000));
}

TEST_F(EtcdTest, BadValuesAreSkippedAndOptionsChecked) {
  // Something else wrote under the prefix: skipped, said once, counted.
  etcd_->Put(std::string(kPrefix) + "junk", "not an address");
  auto a = Register("127.0.0.1:7001", std::chrono::seconds(2));
  ASSERT_NE(a, nullptr);
  auto source = Watch();
  ASSERT_NE(source, nullptr);
  WaitFor(*source, {"127.0.0.1:7001"}, milliseconds(5000));
  EXPECT_GE(source->stats().errors, 1u);

  EtcdRegistrarOptions o;
  o.advertise_address = "127.0.0.1:7001";
  auto no_endpoint = EtcdRegistrar::Start(o);
  ASSERT_FALSE(no_endpoint.ok());
  EXPECT_NE(std::string(no_endpoint.status().message()).find("--etcd-endpoints"), std::string::npos);
  o.endpoints = {etcd_->endpoint()};
  o.advertise_address = "sheafd";
  auto no_port = EtcdRegistrar::Start(o);
  ASSERT_FALSE(no_port.ok());
  EXPECT_NE(std::string(no_port.status().message()).find("--advertise-address"), std::string::npos);
}

// Real sheafd processes registered through their flags; an agent's source
// and picker on the etcd:// target. SIGKILL: the agent moves within
// seconds (health) and the key expires with the lease; SIGTERM: the key is
// revoked at once and sheafd exits 0.
TEST_F(EtcdTest, RealDaemonsKilledAndStopped) {
  const char* sheafd = std::getenv("SHEAFD");
  ASSERT_NE(sheafd, nullptr) << "SHEAFD: path of the sheafd binary (meson sets it)";
  std::vector<std::unique_ptr<sheaf::testing::Process>> daemons;
  Strings addresses;
  for (const char* name : {"a", "b"}) {
    std::string ready = dir_.Sub(std::string(name) + ".ready");
    daemons.push_back(sheaf::testing::Process::Start(
        {sheafd, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir",
         dir_.Sub(std::string("data-") + name), "--ready-file", ready, "--etcd-endpoints", etcd_->endpoint(),
         "--etcd-prefix", kPrefix, "--etcd-lease-ttl", "3s", "--grace-period", "1s"},
        dir_.Sub(std::string(name) + ".log")));
    ASSERT_TRUE(sheaf::testing::WaitFor([&] { return !sheaf::testing::ReadFile(ready).empty(); }, milliseconds(20000)));
    std::smatch m;
    std::string text = sheaf::testing::ReadFile(ready);
    ASSERT_TRUE(std::regex_search(text, m, std::regex("grpc_port=(\\d+)")));
    addresses.push_back("127.0.0.1:" + m[1].str());
  }
  auto source = Watch();
  ASSERT_NE(source, nullptr);
  WaitFor(*source, addresses, milliseconds(10000));

  PickerOptions po;
  po.identity = "agent-etcd-e2e";
  po.health_interval = milliseconds(500);
  po.health_timeout = milliseconds(500);
  DaemonPicker picker(source.get(), po);
  auto pick = picker.WaitForPick(milliseconds(5000));
  ASSERT_TRUE(pick);
  std::string first = RendezvousOrder(po.identity, addresses)[0];
  ASSERT_EQ(pick->address, first);
  size_t killed = first == addresses[0] ? 0 : 1;
  size_t other = 1 - killed;

  auto t0 = Clock::now();
  daemons[killed]->Signal(SIGKILL);
  auto moved = picker.WaitForChange(pick->generation, milliseconds(5000));
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->address, addresses[other]);
  auto move_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  EXPECT_LT(move_ms, 3000) << "the agent moves on the health check, before the key expires";
  WaitFor(*source, {addresses[other]}, milliseconds(8000));
  auto expire_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  EXPECT_GE(expire_ms, 1000) << "a killed daemon cannot revoke: its key must expire";

  t0 = Clock::now();
  daemons[other]->Signal(SIGTERM);
  int64_t took = WaitFor(*source, {}, milliseconds(3000));
  EXPECT_GE(took, 0);
  EXPECT_LT(took, 1500) << "SIGTERM revokes the lease first";
  std::printf("SIGKILL: agent moved after %lld ms, key expired after %lld ms (TTL 3 s); SIGTERM: key gone after %lld ms\n",
              static_cast<long long>(move_ms), static_cast<long long>(expire_ms), static_cast<long long>(took));
  EXPECT_EQ(daemons[other]->Wait(milliseconds(15000)), 0);
  EXPECT_FALSE(picker.WaitForChange(moved->generation, milliseconds(5000))) << "no daemon left to pick";
}

}  // namespace
}  // namespace sheaf::agent::discovery
