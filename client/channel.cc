#include "client/channel.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/client_interceptor.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/flags.h"

namespace sheaf::client {
namespace {

// Tokens are short secrets; a larger file is the wrong file.
constexpr size_t kMaxTokenBytes = 4096;
constexpr size_t kMaxPemBytes = 1 << 20;

absl::StatusOr<std::string> ReadFile(const char* flag, const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(fmt::format("{} {}: cannot read: {}", flag, path, std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  std::string out = text.str();
  if (out.empty()) return absl::InvalidArgumentError(fmt::format("{} {}: the file is empty", flag, path));
  if (out.size() > max_bytes) {
    return absl::InvalidArgumentError(fmt::format("{} {}: {} bytes, more than the {} expected", flag, path,
                                                  out.size(), max_bytes));
  }
  return out;
}

// Adds "authorization: Bearer <token>" to every call's initial metadata.
class TokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", *header_});
    }
    methods->Proceed();
  }

 private:
  const std::string* header_;  // owned by the factory, which the channel keeps
};

class TokenInterceptorFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(const std::string& token) : header_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo*) override {
    return new TokenInterceptor(&header_);
  }

 private:
  const std::string header_;
};

}  // namespace

void RegisterSecurityFlags(FlagSet& flags, SecurityFlags* out) {
  flags.String("tls-ca", &out->tls_ca,
               "connect with TLS and verify the server's certificate against these PEM CA certificates "
               "(default: plaintext)");
  flags.String("tls-cert", &out->tls_cert, "mutual TLS: this client's PEM certificate (with --tls-key, --tls-ca)");
  flags.String("tls-key", &out->tls_key, "mutual TLS: the PEM private key of --tls-cert");
  flags.String("tls-server-name", &out->tls_server_name,
               "the name the server's certificate must carry, when it is not the address's host");
  flags.String("token-file", &out->token_file,
               "send this file's content (trimmed) as \"authorization: Bearer TOKEN\" on every call");
}

absl::StatusOr<std::shared_ptr<const ClientSecurity>> ClientSecurity::Load(const SecurityFlags& flags) {
  std::shared_ptr<ClientSecurity> out(new ClientSecurity());
  if (flags.tls_cert.empty() != flags.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together: give both for mutual TLS, or neither");
  }
  if (!flags.tls_cert.empty() && flags.tls_ca.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key need --tls-ca (the CA that signed the server's "
                                      "certificate): mutual TLS is TLS first");
  }
  if (!flags.tls_server_name.empty() && flags.tls_ca.empty()) {
    return absl::InvalidArgumentError("--tls-server-name needs --tls-ca (it names the server's certificate)");
  }
  if (!flags.tls_ca.empty()) {
    auto root = ReadFile("--tls-ca", flags.tls_ca, kMaxPemBytes);
    if (!root.ok()) return root.status();
    if (root->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return absl::InvalidArgumentError(fmt::format("--tls-ca {}: no PEM certificate in it", flags.tls_ca));
    }
    out->root_pem_ = *std::move(root);
  }
  if (!flags.tls_cert.empty()) {
    auto cert = ReadFile("--tls-cert", flags.tls_cert, kMaxPemBytes);
    if (!cert.ok()) return cert.status();
    auto key = ReadFile("--tls-key", flags.tls_key, kMaxPemBytes);
    if (!key.ok()) return key.status();
    out->cert_pem_ = *std::move(cert);
    out->key_pem_ = *std::move(key);
  }
  out->server_name_ = flags.tls_server_name;
  if (!flags.token_file.empty()) {
    auto token = ReadFile("--token-file", flags.token_file, kMaxTokenBytes);
    if (!token.ok()) return token.status();
    const size_t begin = token->find_first_not_of(" \t\r\n");
    const size_t end = token->find_last_not_of(" \t\r\n");
    if (begin == std::string::npos) {
      return absl::InvalidArgumentError(fmt::format("--token-file {}: only white space in it", flags.token_file));
    }
    out->token_ = token->substr(begin, end - begin + 1);
    for (char c : out->token_) {
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
        return absl::InvalidArgumentError(fmt::format(
            "--token-file {}: the token must be one line of printable ASCII (metadata cannot carry it otherwise)",
            flags.token_file));
      }
    }
  }
  return std::shared_ptr<const ClientSecurity>(std::move(out));
}

std::shared_ptr<grpc::ChannelCredentials> ClientSecurity::Credentials() const {
  if (!tls()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = root_pem_;
  options.pem_private_key = key_pem_;
  options.pem_cert_chain = cert_pem_;
  return grpc::SslCredentials(options);
}

std::shared_ptr<grpc::Channel> ClientSecurity::NewChannel(const std::string& target,
                                                          grpc::ChannelArguments args) const {
  if (!server_name_.empty()) args.SetSslTargetNameOverride(server_name_);
  if (token_.empty()) return grpc::CreateCustomChannel(target, Credentials(), args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<TokenInterceptorFactory>(token_));
  return grpc::experimental::CreateCustomChannelWithInterceptors(target, Credentials(), args,
                                                                 std::move(interceptors));
}

std::shared_ptr<grpc::Channel> ClientSecurity::NewChannel(const std::string& target) const {
  return NewChannel(target, grpc::ChannelArguments());
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> NewChannel(const std::string& target, const SecurityFlags& flags) {
  auto security = ClientSecurity::Load(flags);
  if (!security.ok()) return security.status();
  return (*security)->NewChannel(target);
}

}  // namespace sheaf::client
