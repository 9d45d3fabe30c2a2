// How sheaf's clients (sheaf-agent, sheafctl, sheaf-loadgen) reach a
// sheafd that asks for TLS, mutual TLS or a bearer token: the same flags,
// the same credentials and the same token interceptor for all of them.
//
//   --tls-ca FILE           verify the server's certificate against these
//                           CAs (PEM); without it the channel is plaintext
//   --tls-cert/--tls-key    a client certificate for mutual TLS
//   --tls-server-name NAME  the name the certificate must carry, when the
//                           address is not it (e.g. an IP in a test)
//   --tls-refresh-interval  how often the three TLS files are re-read (60s)
//   --token-file FILE       its content, trimmed, goes out as
//                           "authorization: Bearer <token>" on every call
//
// Rotation without a restart (sheaf-agent runs for months while
// cert-manager or Vault renew short-lived certificates and tokens):
//   - The token is sent by a client interceptor, not by gRPC call
//     credentials, so it also works on a plaintext loopback channel (call
//     credentials need TLS). Each call asks TokenFile for the header; at
//     most once a second per process it compares the file's identity
//     (inode, size, mtime in ns) with the last look and re-reads it when it
//     changed. A new file that is unreadable, empty or not one printable
//     line leaves the last good token in use and is logged once per change,
//     naming the file.
//   - TLS: the channel credentials are gRPC's TlsCredentials over a
//     FileWatcherCertificateProvider reading the user's files every
//     --tls-refresh-interval: the CA (root certificates) and, with mutual
//     TLS, the key and certificate. New connections use what it read last;
//     open connections keep the certificate they started with. The server
//     is verified as with SslCredentials: its chain against the CA
//     (set_verify_server_certs), its name against the target or
//     --tls-server-name (HostNameCertificateVerifier, set explicitly rather
//     than relying on 1.51 adding it when none is set) and against each
//     call's host (set_check_call_host).
//   - How to replace the files: write each new file beside the old one and
//     rename it into place (`mv`, atomic), never rewrite it in place: gRPC
//     1.51's watcher reads whatever is there (a half-written file breaks
//     new handshakes until the next refresh; a missing one too). It reads
//     the key, then the certificate, and reads again when either mtime
//     changed meanwhile, but it does not check that they match: between
//     two renames it may pair the new key with the old certificate until
//     the next refresh (new handshakes fail, the agent retries and spools;
//     nothing is lost). To swap the pair atomically, keep key and
//     certificate in ONE PEM file given to both --tls-key and --tls-cert
//     (what sheafd does with its private copy, daemon/tls.h) and rename it
//     into place, or use a directory swapped at once (a Kubernetes secret
//     volume, as cert-manager's). Renew before expiry: the new certificate
//     must be in place one refresh interval before the old one expires.
// Load checks at start what it can (files readable, non-empty, a PEM
// certificate in the CA file, cert and key together, a valid token); errors
// name the flag and the file.
//
// This header includes no gRPC (agent_config.cc registers the flags).
#ifndef SHEAF_CLIENT_CHANNEL_H_
#define SHEAF_CLIENT_CHANNEL_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace grpc {
class Channel;
class ChannelArguments;
class ChannelCredentials;
namespace experimental {
class CertificateProviderInterface;
}
}  // namespace grpc

namespace sheaf {
class FlagSet;
}

namespace sheaf::client {

// The flags' values; file paths, nothing read yet.
struct SecurityFlags {
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  std::string token_file;
  int64_t tls_refresh_ms = 60'000;  // --tls-refresh-interval; gRPC counts whole seconds, at least 1

  bool operator==(const SecurityFlags&) const = default;
};

// Registers --tls-ca, --tls-cert, --tls-key, --tls-server-name,
// --tls-refresh-interval and --token-file (and so the config file keys
// tls_ca, ...).
void RegisterSecurityFlags(FlagSet& flags, SecurityFlags* out);

// --token-file, re-read when it changes (see the header comment).
// Thread-safe.
class TokenFile {
 public:
  // Reads and checks the file now. INVALID_ARGUMENT naming --token-file and
  // the file when it cannot be read, is empty, larger than 4 KiB, or not
  // one line of printable ASCII. `check_interval`: how often at most
  // Header() looks at the file (tests use 0).
  static absl::StatusOr<std::shared_ptr<TokenFile>> Open(
      const std::string& path, std::chrono::milliseconds check_interval = std::chrono::seconds(1));

  // "Bearer <token>" with the file's current token, or the last good one
  // when the file changed into something unusable.
  std::string Header() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& path() const { return path_; }

 private:
  // What tells one version of the file from another without reading it.
  struct Stamp {
    int err = 0;  // stat's errno; the rest is 0 then
    ino_t inode = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const Stamp&) const = default;
  };
  TokenFile(std::string path, std::chrono::milliseconds check_interval)
      : path_(std::move(path)), check_interval_(check_interval) {}
  static Stamp StampOf(const std::string& path);
  void Refresh() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const std::chrono::milliseconds check_interval_;
  absl::Mutex mu_;
  std::string header_ ABSL_GUARDED_BY(mu_);
  Stamp stamp_ ABSL_GUARDED_BY(mu_);  // of the version looked at last (good or not)
  std::chrono::steady_clock::time_point next_check_ ABSL_GUARDED_BY(mu_);
};

// The files checked, ready to make channels. Thread-safe.
class ClientSecurity {
 public:
  // Reads and checks the files. INVALID_ARGUMENT naming the flag and file
  // when one cannot be read or is empty, when --tls-cert and --tls-key are
  // not given together, when they are given without --tls-ca, or when
  // --tls-refresh-interval is under 1s. With TLS, starts gRPC's watcher of
  // the files (a thread, stopped when the last channel and this are gone).
  static absl::StatusOr<std::shared_ptr<const ClientSecurity>> Load(const SecurityFlags& flags);

  // A channel to `target` with these credentials, `args` (plus the server
  // name override) and the token interceptor. Does not connect. Every
  // channel shares the one watcher and the one token file.
  std::shared_ptr<grpc::Channel> NewChannel(const std::string& target, grpc::ChannelArguments args) const;
  std::shared_ptr<grpc::Channel> NewChannel(const std::string& target) const;

  bool tls() const { return provider_ != nullptr; }
  bool has_token() const { return token_ != nullptr; }

 private:
  ClientSecurity() = default;
  std::shared_ptr<grpc::ChannelCredentials> Credentials() const;

  bool mutual_ = false;
  std::string server_name_;
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider_;  // null: plaintext
  std::shared_ptr<TokenFile> token_;                                            // null: no --token-file
};

// Load then NewChannel, for the tools: one channel or the error.
absl::StatusOr<std::shared_ptr<grpc::Channel>> NewChannel(const std::string& target, const SecurityFlags& flags);

}  // namespace sheaf::client

#endif  // SHEAF_CLIENT_CHANNEL_H_
