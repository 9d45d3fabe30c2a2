#include "daemon/tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/log.h"

namespace sheaf::daemon {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct ChainFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

// OpenSSL's last error as text, and the queue cleared.
std::string SslError() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no details";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

absl::StatusOr<std::string> ReadFile(std::string_view flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(fmt::format("{} {}: cannot read: {}", flag, path, std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError(fmt::format("{} {}: cannot read", flag, path));
  return text.str();
}

// Every PEM certificate in `pem`, in order. An error when there is none.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(std::string_view flag, const std::string& path,
                                                       const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> certs;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(x);
  const unsigned long last = ERR_peek_last_error();
  ERR_clear_error();
  // The loop ends at the end of the text (no start line); anything else is a
  // broken certificate.
  if (last != 0 && ERR_GET_REASON(last) != PEM_R_NO_START_LINE) {
    char text[256];
    ERR_error_string_n(last, text, sizeof(text));
    return absl::InvalidArgumentError(fmt::format("{} {}: a broken PEM certificate: {}", flag, path, text));
  }
  if (certs.empty()) {
    return absl::InvalidArgumentError(fmt::format("{} {}: no PEM certificate (\"-----BEGIN CERTIFICATE-----\") in it", flag, path));
  }
  return certs;
}

std::string TimeText(const ASN1_TIME* t) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  ASN1_TIME_print(bio.get(), t);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string DescribeCertificate(X509* cert) {
  char subject[512] = "";
  X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
  std::string serial = "?";
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(cert), nullptr)) {
    char* hex = BN_bn2hex(bn);
    serial = hex;
    OPENSSL_free(hex);
    BN_free(bn);
  }
  return fmt::format("subject {}, serial {}, expires {}", subject, serial, TimeText(X509_get0_notAfter(cert)));
}

// Writes `text` to `path` through a temporary file and rename, readable
// by this user only, with modification time `mtime` (seconds).
absl::Status WritePrivate(const std::string& path, const std::string& text, int64_t mtime) {
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(fmt::format("cannot write {}: {}", tmp, std::strerror(errno)));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      close(fd);
      return absl::InternalError(fmt::format("cannot write {}: {}", tmp, std::strerror(e)));
    }
    done += static_cast<size_t>(n);
  }
  const timespec times[2] = {{static_cast<time_t>(mtime), 0}, {static_cast<time_t>(mtime), 0}};
  const bool timed = futimens(fd, times) == 0;
  close(fd);
  if (!timed || rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(fmt::format("cannot replace {}: {}", path, std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

struct TlsCertificates::Pair {
  X509Ptr cert;
  std::unique_ptr<STACK_OF(X509), ChainFree> chain;  // the certificates after the first
  std::unique_ptr<EVP_PKEY, KeyFree> key;
  std::unique_ptr<X509_STORE, StoreFree> client_ca;  // null without --tls-client-ca
  std::string identity_pem;                          // key, then certificate and chain, for gRPC
  std::string client_ca_pem;
  std::string description;
};

// Reads and checks the files named by `options`: what is served only
// after this returns a pair.
absl::StatusOr<std::shared_ptr<TlsCertificates::Pair>> TlsCertificates::ReadPair(const TlsOptions& options) {
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together: give both (or neither, for plaintext)");
  }
  auto pair = std::make_shared<Pair>();
  auto cert_pem = ReadFile("--tls-cert", options.cert_file);
  if (!cert_pem.ok()) return cert_pem.status();
  auto certs = ParseCertificates("--tls-cert", options.cert_file, *cert_pem);
  if (!certs.ok()) return certs.status();
  pair->cert = std::move(certs->front());
  pair->chain.reset(sk_X509_new_null());
  for (size_t i = 1; i < certs->size(); ++i) sk_X509_push(pair->chain.get(), (*certs)[i].release());

  auto key_pem = ReadFile("--tls-key", options.key_file);
  if (!key_pem.ok()) return key_pem.status();
  {
    BioPtr bio(BIO_new_mem_buf(key_pem->data(), static_cast<int>(key_pem->size())));
    // No passphrase callback: an encrypted key fails here, not at a prompt.
    pair->key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
  }
  if (!pair->key) {
    return absl::InvalidArgumentError(
        fmt::format("--tls-key {}: no usable PEM private key (encrypted keys are not supported): {}",
                    options.key_file, SslError()));
  }
  if (X509_check_private_key(pair->cert.get(), pair->key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(fmt::format("--tls-key {} does not match the certificate in --tls-cert {}",
                                                  options.key_file, options.cert_file));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(pair->cert.get())) <= 0) {
    return absl::InvalidArgumentError(fmt::format("--tls-cert {}: the certificate expired on {}", options.cert_file,
                                                  TimeText(X509_get0_notAfter(pair->cert.get()))));
  }
  if (X509_cmp_current_time(X509_get0_notBefore(pair->cert.get())) > 0) {
    LogWarn("--tls-cert {}: the certificate is not valid before {}; clients refuse it until then", options.cert_file,
            TimeText(X509_get0_notBefore(pair->cert.get())));
  }
  pair->description = DescribeCertificate(pair->cert.get());

  // What gRPC reads: the key first, then the certificate and its chain,
  // re-encoded from what was checked.
  BioPtr out(BIO_new(BIO_s_mem()));
  bool written = PEM_write_bio_PrivateKey(out.get(), pair->key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1 &&
                 PEM_write_bio_X509(out.get(), pair->cert.get()) == 1;
  for (int i = 0; written && i < sk_X509_num(pair->chain.get()); ++i) {
    written = PEM_write_bio_X509(out.get(), sk_X509_value(pair->chain.get(), i)) == 1;
  }
  if (!written) return absl::InternalError(fmt::format("encoding the TLS pair: {}", SslError()));
  char* data = nullptr;
  long n = BIO_get_mem_data(out.get(), &data);
  pair->identity_pem.assign(data, static_cast<size_t>(n));

  if (!options.client_ca_file.empty()) {
    auto ca_pem = ReadFile("--tls-client-ca", options.client_ca_file);
    if (!ca_pem.ok()) return ca_pem.status();
    auto cas = ParseCertificates("--tls-client-ca", options.client_ca_file, *ca_pem);
    if (!cas.ok()) return cas.status();
    pair->client_ca.reset(X509_STORE_new());
    BioPtr ca_out(BIO_new(BIO_s_mem()));
    for (const X509Ptr& ca : *cas) {
      if (X509_STORE_add_cert(pair->client_ca.get(), ca.get()) != 1 || PEM_write_bio_X509(ca_out.get(), ca.get()) != 1) {
        return absl::InvalidArgumentError(
            fmt::format("--tls-client-ca {}: cannot use a certificate: {}", options.client_ca_file, SslError()));
      }
    }
    n = BIO_get_mem_data(ca_out.get(), &data);
    pair->client_ca_pem.assign(data, static_cast<size_t>(n));
  }
  return pair;
}

TlsCertificates::TlsCertificates(TlsOptions options) : options_(std::move(options)) {}

TlsCertificates::~TlsCertificates() {
  provider_.reset();  // stops its refresh thread before its files go
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

absl::StatusOr<std::unique_ptr<TlsCertificates>> TlsCertificates::Load(const TlsOptions& options) {
  auto pair = ReadPair(options);
  if (!pair.ok()) return pair.status();
  std::unique_ptr<TlsCertificates> t(new TlsCertificates(options));
  if (options.private_dir.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string templ = fmt::format("{}/sheafd-tls-XXXXXX", tmpdir != nullptr && *tmpdir ? tmpdir : "/tmp");
    if (mkdtemp(templ.data()) == nullptr) {  // mode 0700
      return absl::InternalError(fmt::format("cannot create a private directory {}: {} (set TMPDIR)", templ,
                                             std::strerror(errno)));
    }
    t->dir_ = templ;
  } else {
    // What an earlier run left (it may have been killed) goes first.
    std::error_code ec;
    std::filesystem::remove_all(options.private_dir, ec);
    if (mkdir(options.private_dir.c_str(), 0700) != 0) {
      return absl::InternalError(fmt::format("cannot create the private directory {}: {}", options.private_dir,
                                             std::strerror(errno)));
    }
    t->dir_ = options.private_dir;
  }
  {
    absl::MutexLock lock(&t->install_mu_);
    if (absl::Status s = t->Install(*std::move(pair)); !s.ok()) return s;
  }
  // Read once now (synchronously), then every second.
  const std::string identity = t->dir_ + "/identity.pem";
  if (t->mutual()) {
    t->provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        identity, identity, t->dir_ + "/client_ca.pem", 1);
  } else {
    t->provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(identity, identity, 1);
  }
  LogInfo("TLS: serving {}{}", t->Describe(),
          t->mutual() ? fmt::format("; client certificates required, signed by {}", options.client_ca_file) : "");
  return t;
}

absl::Status TlsCertificates::Install(std::shared_ptr<const Pair> pair) {
  // A later second than the previous file's: gRPC's reader notices a
  // replacement during its read by the mtime (seconds) changing.
  const int64_t mtime = std::max<int64_t>(static_cast<int64_t>(std::time(nullptr)), last_mtime_ + 1);
  if (!pair->client_ca_pem.empty()) {
    if (auto s = WritePrivate(dir_ + "/client_ca.pem", pair->client_ca_pem, mtime); !s.ok()) return s;
  }
  if (auto s = WritePrivate(dir_ + "/identity.pem", pair->identity_pem, mtime); !s.ok()) return s;
  last_mtime_ = mtime;
  absl::MutexLock lock(&mu_);
  current_ = std::move(pair);
  return absl::OkStatus();
}

absl::Status TlsCertificates::Reload() {
  auto pair = ReadPair(options_);
  if (!pair.ok()) {
    return absl::Status(pair.status().code(),
                        fmt::format("{} (still serving {})", std::string(pair.status().message()), Describe()));
  }
  absl::MutexLock lock(&install_mu_);
  const std::string before = Describe();
  if (auto s = Install(*std::move(pair)); !s.ok()) return s;
  const std::string after = Describe();
  if (after != before) LogInfo("TLS: reloaded; now serving {}", after);
  return absl::OkStatus();
}

std::shared_ptr<const TlsCertificates::Pair> TlsCertificates::current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

std::string TlsCertificates::Describe() const { return current()->description; }

std::shared_ptr<grpc::ServerCredentials> TlsCertificates::GrpcCredentials() const {
  grpc::experimental::TlsServerCredentialsOptions options(provider_);
  options.watch_identity_key_cert_pairs();
  if (mutual()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

int TlsCertificates::OnCertificate(void* ssl_ptr, void* self) {
  SSL* ssl = static_cast<SSL*>(ssl_ptr);
  std::shared_ptr<const Pair> pair = static_cast<TlsCertificates*>(self)->current();
  if (SSL_use_certificate(ssl, pair->cert.get()) != 1 || SSL_use_PrivateKey(ssl, pair->key.get()) != 1 ||
      SSL_set1_chain(ssl, pair->chain.get()) != 1) {
    return 0;  // the handshake fails
  }
  if (pair->client_ca && SSL_set1_verify_cert_store(ssl, pair->client_ca.get()) != 1) return 0;
  return 1;
}

absl::Status TlsCertificates::ConfigureSslContext(void* ssl_ctx) {
  SSL_CTX* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  // TLS 1.2 and later, as gRPC.
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_cert_cb(ctx, [](SSL* ssl, void* self) { return OnCertificate(ssl, self); }, this);
  if (mutual()) {
    // The verify store is set per handshake (OnCertificate), so a reload of
    // --tls-client-ca applies to new connections.
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  return absl::OkStatus();
}

bool IsLoopbackListen(std::string_view listen) {
  if (listen.starts_with("unix:") || listen.starts_with("unix-abstract:")) return true;
  std::string host;
  if (listen.starts_with("[")) {
    size_t close = listen.find(']');
    if (close == std::string_view::npos) return false;
    host = std::string(listen.substr(1, close - 1));
  } else {
    size_t colon = listen.rfind(':');
    if (colon == std::string_view::npos) return false;  // a bare port: every address
    host = std::string(listen.substr(0, colon));
  }
  if (host.starts_with("ipv4:")) host = host.substr(5);
  if (host == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

absl::Status CheckListenSecurity(std::string_view flag, std::string_view listen, bool tls, bool insecure) {
  if (tls || insecure || IsLoopbackListen(listen)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      fmt::format("{} \"{}\" is reachable from other hosts, and without TLS anyone on the network can read and "
                  "write it: add --tls-cert FILE --tls-key FILE (docs/SECURITY.md), listen on 127.0.0.1, or add "
                  "--insecure to accept plaintext",
                  flag, listen));
}

}  // namespace sheaf::daemon
