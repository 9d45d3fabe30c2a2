#include "client/channel.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/support/client_interceptor.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/flags.h"
#include "common/log.h"

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

// The token in --token-file `path`: its content trimmed, one line of
// printable ASCII (what metadata can carry).
absl::StatusOr<std::string> ReadToken(const std::string& path) {
  auto text = ReadFile("--token-file", path, kMaxTokenBytes);
  if (!text.ok()) return text.status();
  const size_t begin = text->find_first_not_of(" \t\r\n");
  const size_t end = text->find_last_not_of(" \t\r\n");
  if (begin == std::string::npos) {
    return absl::InvalidArgumentError(fmt::format("--token-file {}: only white space in it", path));
  }
  std::string token = text->substr(begin, end - begin + 1);
  for (char c : token) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
      return absl::InvalidArgumentError(fmt::format(
          "--token-file {}: the token must be one line of printable ASCII (metadata cannot carry it otherwise)",
          path));
    }
  }
  return token;
}

// Adds "authorization: Bearer <token>" to every call's initial metadata.
class TokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(TokenFile* token) : token_(token) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", token_->Header()});
    }
    methods->Proceed();
  }

 private:
  TokenFile* token_;  // kept by the factory, which the channel keeps
};

class TokenInterceptorFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(std::shared_ptr<TokenFile> token) : token_(std::move(token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo*) override {
    return new TokenInterceptor(token_.get());
  }

 private:
  const std::shared_ptr<TokenFile> token_;
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
  flags.Duration("tls-refresh-interval", &out->tls_refresh_ms,
                 "how often --tls-ca, --tls-cert and --tls-key are re-read, for new connections (replace them "
                 "by rename; at least 1s)");
  flags.String("token-file", &out->token_file,
               "send this file's content (trimmed) as \"authorization: Bearer TOKEN\" on every call; re-read "
               "within a second when it changes");
}

absl::StatusOr<std::shared_ptr<TokenFile>> TokenFile::Open(const std::string& path,
                                                           std::chrono::milliseconds check_interval) {
  const Stamp stamp = StampOf(path);  // before reading: a change after it is seen next time
  auto token = ReadToken(path);
  if (!token.ok()) return token.status();
  std::shared_ptr<TokenFile> out(new TokenFile(path, check_interval));
  absl::MutexLock lock(&out->mu_);
  out->header_ = "Bearer " + *token;
  out->stamp_ = stamp;
  out->next_check_ = std::chrono::steady_clock::now() + check_interval;
  return out;
}

TokenFile::Stamp TokenFile::StampOf(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return Stamp{.err = errno};
  return Stamp{.inode = st.st_ino,
               .size = st.st_size,
               .mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

void TokenFile::Refresh() {
  const Stamp now = StampOf(path_);
  if (now == stamp_) return;
  stamp_ = now;  // a bad version is logged once, not at every check
  auto token = ReadToken(path_);
  if (!token.ok()) {
    LogWarn("{}; still sending the token read before", std::string(token.status().message()));
    return;
  }
  std::string header = "Bearer " + *token;
  if (header == header_) return;
  header_ = std::move(header);
  LogInfo("--token-file {}: a new token, sent from the next call on", path_);
}

std::string TokenFile::Header() {
  absl::MutexLock lock(&mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now >= next_check_) {
    next_check_ = now + check_interval_;
    Refresh();
  }
  return header_;
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
  if (flags.tls_refresh_ms < 1000) {
    return absl::InvalidArgumentError(fmt::format(
        "--tls-refresh-interval {}ms: must be at least 1s (gRPC re-reads the files in whole seconds)",
        flags.tls_refresh_ms));
  }
  if (!flags.tls_ca.empty()) {
    auto root = ReadFile("--tls-ca", flags.tls_ca, kMaxPemBytes);
    if (!root.ok()) return root.status();
    if (root->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return absl::InvalidArgumentError(fmt::format("--tls-ca {}: no PEM certificate in it", flags.tls_ca));
    }
  }
  if (!flags.tls_cert.empty()) {
    auto cert = ReadFile("--tls-cert", flags.tls_cert, kMaxPemBytes);
    if (!cert.ok()) return cert.status();
    auto key = ReadFile("--tls-key", flags.tls_key, kMaxPemBytes);
    if (!key.ok()) return key.status();
    out->mutual_ = true;
  }
  if (!flags.tls_ca.empty()) {
    // Rounded up: a refresh never comes sooner than asked.
    const auto seconds = static_cast<unsigned>((flags.tls_refresh_ms + 999) / 1000);
    // Reads the files once now, synchronously, then every `seconds` on its
    // own thread.
    if (out->mutual_) {
      out->provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          flags.tls_key, flags.tls_cert, flags.tls_ca, seconds);
    } else {
      out->provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(flags.tls_ca, seconds);
    }
  }
  out->server_name_ = flags.tls_server_name;
  if (!flags.token_file.empty()) {
    auto token = TokenFile::Open(flags.token_file);
    if (!token.ok()) return token.status();
    out->token_ = *std::move(token);
  }
  return std::shared_ptr<const ClientSecurity>(std::move(out));
}

std::shared_ptr<grpc::ChannelCredentials> ClientSecurity::Credentials() const {
  if (!tls()) return grpc::InsecureChannelCredentials();
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider_);
  options.watch_root_certs();
  if (mutual_) options.watch_identity_key_cert_pairs();
  // What SslCredentials checks, spelled out: the chain against the CA, the
  // name against the target (or GRPC_SSL_TARGET_NAME_OVERRIDE_ARG), and
  // each call's host against the certificate.
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  options.set_check_call_host(true);
  return grpc::experimental::TlsCredentials(options);
}

std::shared_ptr<grpc::Channel> ClientSecurity::NewChannel(const std::string& target,
                                                          grpc::ChannelArguments args) const {
  if (!server_name_.empty()) args.SetSslTargetNameOverride(server_name_);
  if (!token_) return grpc::CreateCustomChannel(target, Credentials(), args);
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
