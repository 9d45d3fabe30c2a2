// How sheaf's clients (sheaf-agent, sheafctl, sheaf-loadgen) reach a
// sheafd that asks for TLS, mutual TLS or a bearer token: the same flags,
// the same credentials and the same token interceptor for all of them.
//
//   --tls-ca FILE           verify the server's certificate against these
//                           CAs (PEM); without it the channel is plaintext
//   --tls-cert/--tls-key    a client certificate for mutual TLS
//   --tls-server-name NAME  the name the certificate must carry, when the
//                           address is not it (e.g. an IP in a test)
//   --token-file FILE       its content, trimmed, goes out as
//                           "authorization: Bearer <token>" on every call
//
// The token is sent by a client interceptor, not by gRPC call credentials,
// so it also works on a plaintext loopback channel (call credentials need
// TLS). The files are read once, at Load; a client restarts to pick up new
// ones. Errors name the flag and the file.
//
// This header includes no gRPC (agent_config.cc registers the flags).
#ifndef SHEAF_CLIENT_CHANNEL_H_
#define SHEAF_CLIENT_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace grpc {
class Channel;
class ChannelArguments;
class ChannelCredentials;
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

  bool operator==(const SecurityFlags&) const = default;
};

// Registers --tls-ca, --tls-cert, --tls-key, --tls-server-name and
// --token-file (and so the config file keys tls_ca, ...).
void RegisterSecurityFlags(FlagSet& flags, SecurityFlags* out);

// The files read and checked, ready to make channels. Thread-safe.
class ClientSecurity {
 public:
  // Reads the files. INVALID_ARGUMENT naming the flag and file when one
  // cannot be read or is empty, when --tls-cert and --tls-key are not
  // given together, or when they are given without --tls-ca.
  static absl::StatusOr<std::shared_ptr<const ClientSecurity>> Load(const SecurityFlags& flags);

  // A channel to `target` with these credentials, `args` (plus the server
  // name override) and the token interceptor. Does not connect.
  std::shared_ptr<grpc::Channel> NewChannel(const std::string& target, grpc::ChannelArguments args) const;
  std::shared_ptr<grpc::Channel> NewChannel(const std::string& target) const;

  bool tls() const { return !root_pem_.empty(); }
  bool has_token() const { return !token_.empty(); }

 private:
  ClientSecurity() = default;
  std::shared_ptr<grpc::ChannelCredentials> Credentials() const;

  std::string root_pem_;
  std::string cert_pem_;
  std::string key_pem_;
  std::string server_name_;
  std::string token_;
};

// Load then NewChannel, for the tools: one channel or the error.
absl::StatusOr<std::shared_ptr<grpc::Channel>> NewChannel(const std::string& target, const SecurityFlags& flags);

}  // namespace sheaf::client

#endif  // SHEAF_CLIENT_CHANNEL_H_
