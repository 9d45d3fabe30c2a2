// daemon/tls.h alone: which listen addresses count as loopback, the
// --insecure rule, and what TlsCertificates accepts and refuses at start and
// on reload (certificates made by Debian's openssl in a temp directory).
// Serving TLS on real ports is tests/e2e/tls_test.py.
#include "daemon/tls.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/support/temp_dir.h"

namespace sheaf::daemon {
namespace {

TEST(TlsTest, LoopbackListenAddresses) {
  for (const char* listen : {"127.0.0.1:7470", "127.8.9.10:0", "localhost:9470", "[::1]:7470", "ipv4:127.0.0.1:1",
                             "unix:/run/sheafd.sock"}) {
    EXPECT_TRUE(IsLoopbackListen(listen)) << listen;
  }
  for (const char* listen : {"0.0.0.0:7470", "9470", "[::]:7470", "10.0.0.1:7470", "sheafd.example:7470",
                             "128.0.0.1:1", "[::2]:1", "[::1", ":7470"}) {
    EXPECT_FALSE(IsLoopbackListen(listen)) << listen;
  }
}

TEST(TlsTest, NonLoopbackPlaintextNeedsInsecure) {
  absl::Status s = CheckListenSecurity("--grpc-listen", "0.0.0.0:7470", false, false);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--grpc-listen \"0.0.0.0:7470\""), std::string::npos) << s;
  EXPECT_NE(s.message().find("--insecure"), std::string::npos) << s;
  EXPECT_NE(s.message().find("--tls-cert"), std::string::npos) << s;
  EXPECT_TRUE(CheckListenSecurity("--grpc-listen", "0.0.0.0:7470", true, false).ok());
  EXPECT_TRUE(CheckListenSecurity("--grpc-listen", "0.0.0.0:7470", false, true).ok());
  EXPECT_TRUE(CheckListenSecurity("--http-listen", "127.0.0.1:9470", false, false).ok());
}

class TlsCertificatesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Run("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 "
        "-subj /CN=test-ca");
    Cert("a", 0xA1, "2");
    Cert("b", 0xB2, "2");
    Cert("expired", 0xE3, "-1");
  }

  void Run(const std::string& args) {
    const std::string command = "cd " + dir_.path() + " && openssl " + args + " >/dev/null 2>&1";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }
  void Cert(const std::string& name, int serial, const std::string& days) {
    Run("req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + name + ".key -out " + name +
        ".csr -subj /CN=" + name);
    Run("x509 -req -in " + name + ".csr -CA ca.pem -CAkey ca.key -set_serial " + std::to_string(serial) +
        " -days " + days + " -out " + name + ".pem");
  }
  // Makes tls.crt/tls.key the pair `cert` + `key` (file copies).
  void Use(const std::string& cert, const std::string& key) {
    namespace fs = std::filesystem;
    fs::copy_file(dir_.Sub(cert + ".pem"), dir_.Sub("tls.crt"), fs::copy_options::overwrite_existing);
    fs::copy_file(dir_.Sub(key + ".key"), dir_.Sub("tls.key"), fs::copy_options::overwrite_existing);
  }
  TlsOptions Options() const { return {dir_.Sub("tls.crt"), dir_.Sub("tls.key"), "", ""}; }

  testing::TempDir dir_;
};

TEST_F(TlsCertificatesTest, LoadsAPairAndReloadsANewOne) {
  Use("a", "a");
  auto tls = TlsCertificates::Load(Options());
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_NE((*tls)->Describe().find("serial A1"), std::string::npos) << (*tls)->Describe();
  EXPECT_FALSE((*tls)->mutual());
  Use("b", "b");
  ASSERT_TRUE((*tls)->Reload().ok());
  EXPECT_NE((*tls)->Describe().find("serial B2"), std::string::npos) << (*tls)->Describe();
}

TEST_F(TlsCertificatesTest, RefusesBadPairsNamingTheFile) {
  Use("b", "a");  // a key of another certificate
  auto mismatched = TlsCertificates::Load(Options());
  EXPECT_EQ(mismatched.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(mismatched.status().message().find("--tls-key " + dir_.Sub("tls.key") + " does not match"),
            std::string::npos)
      << mismatched.status();

  Use("expired", "expired");
  auto expired = TlsCertificates::Load(Options());
  EXPECT_NE(expired.status().message().find("--tls-cert " + dir_.Sub("tls.crt") + ": the certificate expired"),
            std::string::npos)
      << expired.status();

  auto missing = TlsCertificates::Load({dir_.Sub("nope.crt"), dir_.Sub("tls.key"), "", ""});
  EXPECT_NE(missing.status().message().find("--tls-cert " + dir_.Sub("nope.crt") + ": cannot read"),
            std::string::npos)
      << missing.status();

  auto alone = TlsCertificates::Load({dir_.Sub("tls.crt"), "", "", ""});
  EXPECT_NE(alone.status().message().find("go together"), std::string::npos) << alone.status();

  auto not_a_ca = TlsCertificates::Load({dir_.Sub("a.pem"), dir_.Sub("a.key"), dir_.Sub("a.key"), ""});
  EXPECT_NE(not_a_ca.status().message().find("--tls-client-ca " + dir_.Sub("a.key") + ": no PEM certificate"),
            std::string::npos)
      << not_a_ca.status();
}

TEST_F(TlsCertificatesTest, ABadReloadKeepsTheServedPair) {
  Use("a", "a");
  // A private directory left by a killed run is emptied, then used.
  std::filesystem::create_directory(dir_.Sub("private"));
  std::ofstream(dir_.Sub("private/stale")) << "x";
  auto tls = TlsCertificates::Load({dir_.Sub("tls.crt"), dir_.Sub("tls.key"), dir_.Sub("ca.pem"), dir_.Sub("private")});
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_TRUE((*tls)->mutual());
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("private/stale")));
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("private/identity.pem")));
  EXPECT_EQ(std::filesystem::status(dir_.Sub("private")).permissions(), std::filesystem::perms::owner_all);
  const std::string before = (*tls)->Describe();
  for (const auto& [cert, key] : {std::pair{"b", "a"}, {"expired", "expired"}}) {
    Use(cert, key);
    absl::Status s = (*tls)->Reload();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << cert << "/" << key;
    EXPECT_NE(s.message().find("still serving " + before), std::string::npos) << s;
    EXPECT_EQ((*tls)->Describe(), before);
  }
  std::filesystem::remove(dir_.Sub("tls.key"));
  EXPECT_NE((*tls)->Reload().message().find("cannot read"), std::string::npos);
  EXPECT_EQ((*tls)->Describe(), before);
  tls->reset();
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("private")));  // removed at exit
}

}  // namespace
}  // namespace sheaf::daemon
