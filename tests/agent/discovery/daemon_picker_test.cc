// The picker against real gRPC health services on loopback: small servers
// whose health the test sets, and real in-process sheafds.
#include "agent/discovery/daemon_picker.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>

#include "agent/discovery/rendezvous.h"
#include "tests/agent/daemon_fixture.h"
#include "tests/support/temp_dir.h"

namespace sheaf::agent::discovery {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// A source the test sets by hand.
class ManualSource : public AddressSource {
 public:
  ManualSource() : AddressSource("manual") {}
  using AddressSource::Set;
};

// A gRPC server with only the default health service; the test flips it.
class HealthServer {
 public:
  HealthServer() {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    server_ = builder.BuildAndStart();
  }
  ~HealthServer() { Stop(); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void SetServing(bool serving) { server_->GetHealthCheckService()->SetServingStatus(serving); }
  void Stop() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
    server_.reset();
  }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

PickerOptions Fast(milliseconds interval = milliseconds(200)) {
  PickerOptions o;
  o.identity = "agent-0123456789abcdef0123456789abcdef";
  o.health_interval = interval;
  o.health_timeout = milliseconds(500);
  o.channel.max_reconnect_backoff = milliseconds(1000);
  return o;
}

struct Fleet {
  explicit Fleet(int n) {
    std::vector<std::string> addresses;
    for (int i = 0; i < n; ++i) {
      servers.push_back(std::make_unique<HealthServer>());
      addresses.push_back(servers.back()->address());
    }
    source.Set(addresses);
  }
  // The servers in the picker's identity's rendezvous order.
  std::vector<HealthServer*> InOrder(const std::string& identity) {
    std::vector<HealthServer*> out;
    for (const auto& a : RendezvousOrder(identity, source.Addresses())) {
      for (auto& s : servers) {
        if (s->address() == a) out.push_back(s.get());
      }
    }
    return out;
  }
  std::vector<std::unique_ptr<HealthServer>> servers;
  ManualSource source;
};

std::string Address(const std::optional<Pick>& pick) { return pick ? pick->address : "(none)"; }

TEST(DaemonPickerTest, FirstInOrderThenFailsOverWithinSeconds) {
  Fleet fleet(3);
  PickerOptions options = Fast();
  auto order = fleet.InOrder(options.identity);
  DaemonPicker picker(&fleet.source, options);
  auto pick = picker.WaitForPick(milliseconds(5000));
  ASSERT_TRUE(pick);
  EXPECT_EQ(pick->address, order[0]->address());
  ASSERT_NE(pick->channel, nullptr);

  // NOT_SERVING: the agent moves to its second daemon.
  auto t0 = Clock::now();
  order[0]->SetServing(false);
  auto moved = picker.WaitForChange(pick->generation, milliseconds(5000));
  EXPECT_EQ(Address(moved), order[1]->address());
  EXPECT_LT(Clock::now() - t0, milliseconds(3000));

  // Unreachable: on to the third.
  t0 = Clock::now();
  order[1]->Stop();
  auto third = picker.WaitForChange(moved->generation, milliseconds(5000));
  EXPECT_EQ(Address(third), order[2]->address());
  EXPECT_LT(Clock::now() - t0, milliseconds(3000));
  EXPECT_GE(picker.stats().checks_failed, 2u);
  EXPECT_EQ(picker.stats().current, order[2]->address());
}

TEST(DaemonPickerTest, GoesBackOnlyAfterConsecutiveHealthyChecks) {
  Fleet fleet(2);
  PickerOptions options = Fast();
  options.recover_checks = 3;
  auto order = fleet.InOrder(options.identity);
  order[0]->SetServing(false);
  DaemonPicker picker(&fleet.source, options);
  auto pick = picker.WaitForPick(milliseconds(5000));
  ASSERT_EQ(Address(pick), order[1]->address());

  auto t0 = Clock::now();
  order[0]->SetServing(true);
  auto back = picker.WaitForChange(pick->generation, milliseconds(5000));
  auto took = Clock::now() - t0;
  EXPECT_EQ(Address(back), order[0]->address());
  // Three passing checks, a health interval apart at least.
  EXPECT_GE(took, 2 * options.health_interval);
  EXPECT_LT(took, milliseconds(3000));
  EXPECT_EQ(picker.stats().switches, 2u);  // none -> second, second -> first
}

TEST(DaemonPickerTest, NoHealthyDaemonNoPick) {
  Fleet fleet(2);
  PickerOptions options = Fast();
  auto order = fleet.InOrder(options.identity);
  for (auto* s : order) s->SetServing(false);
  DaemonPicker picker(&fleet.source, options);
  EXPECT_FALSE(picker.WaitForPick(milliseconds(1000)));
  EXPECT_EQ(picker.stats().current, "");
  EXPECT_GE(picker.stats().checks_failed, 2u);

  order[1]->SetServing(true);
  EXPECT_EQ(Address(picker.WaitForPick(milliseconds(5000))), order[1]->address());
}

TEST(DaemonPickerTest, ReportFailureChecksAtOnce) {
  Fleet fleet(2);
  PickerOptions options = Fast(std::chrono::minutes(10));  // no periodic check during the test
  auto order = fleet.InOrder(options.identity);
  DaemonPicker picker(&fleet.source, options);
  auto pick = picker.WaitForPick(milliseconds(5000));
  ASSERT_EQ(Address(pick), order[0]->address());

  order[0]->SetServing(false);
  EXPECT_EQ(picker.WaitForChange(pick->generation, milliseconds(500))->generation, pick->generation)
      << "moved without a check";
  picker.ReportFailure(order[1]->address());  // not the current one: nothing to do
  EXPECT_EQ(picker.WaitForChange(pick->generation, milliseconds(500))->generation, pick->generation);
  picker.ReportFailure(order[0]->address());
  EXPECT_EQ(Address(picker.WaitForChange(pick->generation, milliseconds(3000))), order[1]->address());
  EXPECT_EQ(picker.stats().failures_reported, 2u);
}

TEST(DaemonPickerTest, ListChangesAreFollowedAtOnce) {
  Fleet fleet(3);
  PickerOptions options = Fast(std::chrono::minutes(10));
  auto order = fleet.InOrder(options.identity);
  DaemonPicker picker(&fleet.source, options);
  auto pick = picker.WaitForPick(milliseconds(5000));
  ASSERT_EQ(Address(pick), order[0]->address());

  // The current daemon leaves the list (scaled down, deregistered).
  fleet.source.Set({order[1]->address(), order[2]->address()});
  auto moved = picker.WaitForChange(pick->generation, milliseconds(3000));
  EXPECT_EQ(Address(moved), order[1]->address());
  EXPECT_EQ(picker.Order().size(), 2u);

  fleet.source.Set({});
  EXPECT_FALSE(picker.WaitForChange(moved->generation, milliseconds(3000)));
}

// sheafd's own health service: SERVING while up, NOT_SERVING from the start
// of its shutdown; the agent moves to the other daemon.
TEST(DaemonPickerTest, RealDaemonsShutDown) {
  testing::TempDir dir;
  auto a = testing::StartDaemon(dir.Sub("a"), 0);
  auto b = testing::StartDaemon(dir.Sub("b"), 0);
  ASSERT_TRUE(a && b);
  ManualSource source;
  std::string addr_a = "127.0.0.1:" + std::to_string(a->grpc_port());
  std::string addr_b = "127.0.0.1:" + std::to_string(b->grpc_port());
  source.Set({addr_a, addr_b});
  PickerOptions options = Fast();
  DaemonPicker picker(&source, options);
  auto pick = picker.WaitForPick(milliseconds(5000));
  ASSERT_TRUE(pick);
  std::string first = RendezvousOrder(options.identity, {addr_a, addr_b})[0];
  EXPECT_EQ(pick->address, first);

  auto t0 = Clock::now();
  (first == addr_a ? a : b)->Shutdown();
  auto moved = picker.WaitForChange(pick->generation, milliseconds(5000));
  EXPECT_EQ(Address(moved), first == addr_a ? addr_b : addr_a);
  EXPECT_LT(Clock::now() - t0, milliseconds(3000));
}

}  // namespace
}  // namespace sheaf::agent::discovery
