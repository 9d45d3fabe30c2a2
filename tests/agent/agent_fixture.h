// A shipper as sheaf-agent runs it, for tests: its spool in a directory
// and a picker over one daemon port (which may not be up yet).
#ifndef SHEAF_TESTS_AGENT_AGENT_FIXTURE_H_
#define SHEAF_TESTS_AGENT_AGENT_FIXTURE_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>

#include "agent/discovery/address_source.h"
#include "agent/discovery/daemon_picker.h"
#include "agent/discovery/target.h"
#include "agent/shipper.h"
#include "spool/spool.h"

namespace sheaf::agent {

struct TestAgent {
  TestAgent(const std::string& dir, int port, SequenceSource* sequences, ShipperOptions options,
            uint64_t spool_bytes = 64ull << 20) {
    SpoolOptions so;
    so.dir = dir + "/spool";
    so.max_bytes = spool_bytes;
    so.segment_bytes = std::min<uint64_t>(spool_bytes / 4, 8ull << 20);
    so.sync = false;
    auto sp = Spool::Open(so);
    EXPECT_TRUE(sp.ok()) << sp.status();
    spool = *std::move(sp);
    auto target = discovery::ParseTarget("127.0.0.1:" + std::to_string(port));
    source = *discovery::OpenAddressSource(*target);
    discovery::PickerOptions po;
    po.identity = options.agent_id;
    po.health_interval = std::chrono::milliseconds(100);
    po.health_timeout = std::chrono::milliseconds(500);
    picker = std::make_unique<discovery::DaemonPicker>(source.get(), po);
    shipper = std::make_unique<Shipper>(options, picker.get(), spool.get(), sequences);
  }
  ~TestAgent() { shipper.reset(); }  // before the picker and the spool
  std::unique_ptr<Spool> spool;
  std::unique_ptr<discovery::AddressSource> source;
  std::unique_ptr<discovery::DaemonPicker> picker;
  std::unique_ptr<Shipper> shipper;
};

}  // namespace sheaf::agent

#endif  // SHEAF_TESTS_AGENT_AGENT_FIXTURE_H_
