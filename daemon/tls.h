// TLS for sheafd's two listeners (gRPC and HTTP), from one certificate and
// key pair, optionally with client certificates required (mutual TLS), and
// the pair reloaded on SIGHUP so certificates rotate without a restart.
//
// How the served pair changes (docs/SECURITY.md):
//   - Only a validated pair is ever served. Load/Reload read the files with
//     OpenSSL and check them: readable PEM, the key matches the
//     certificate, the certificate has not expired. A bad new pair is an
//     error naming the file; the pair served before goes on being served.
//   - HTTPS (the TLS front before civetweb, tls_front.h): a certificate
//     callback on its SSL_CTX hands every new handshake the current pair
//     (ConfigureSslContext).
//   - gRPC 1.51 has no public per-handshake hook, so its TLS credentials
//     read a FileWatcherCertificateProvider's files (refreshed every
//     second). Those files live in a private directory (mode 0700, removed
//     on exit; TlsOptions::private_dir) and only validated pairs are copied
//     there: key and chain
//     in ONE file, replaced by rename, its mtime always a later second
//     than the previous one's. gRPC compares the mtimes before and after
//     reading and reads again when they differ, so it never serves a key
//     of one pair with the certificate of another. New gRPC connections
//     see a reloaded pair within about a second; connections already open
//     keep the one they started with.
//
// Thread-safe.
#ifndef SHEAF_DAEMON_TLS_H_
#define SHEAF_DAEMON_TLS_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace grpc {
class ServerCredentials;
namespace experimental {
class CertificateProviderInterface;
}
}  // namespace grpc

namespace sheaf::daemon {

struct TlsOptions {
  std::string cert_file;       // --tls-cert: PEM certificate, then its chain
  std::string key_file;        // --tls-key: PEM private key (not encrypted)
  std::string client_ca_file;  // --tls-client-ca: clients must present a certificate it signed ("": none asked)
  // The private directory gRPC's provider reads (created mode 0700, emptied
  // at start, removed at exit). sheafd uses <data-dir>/tls: writable under
  // systemd's ProtectSystem and Kubernetes' read-only root. "": a new
  // directory under $TMPDIR.
  std::string private_dir;
  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

class TlsCertificates {
 public:
  // Reads and checks the files, and writes the private copy gRPC reads.
  // INVALID_ARGUMENT naming the file and the flag when one is bad (also
  // when only one of --tls-cert and --tls-key is given).
  static absl::StatusOr<std::unique_ptr<TlsCertificates>> Load(const TlsOptions& options);
  ~TlsCertificates();  // removes the private directory
  TlsCertificates(const TlsCertificates&) = delete;
  TlsCertificates& operator=(const TlsCertificates&) = delete;

  // SIGHUP: reads the same files again. On success new handshakes get the
  // new pair (and client CA); on error nothing changes and the error names
  // the file.
  absl::Status Reload();

  // Server credentials for grpc::ServerBuilder::AddListeningPort.
  std::shared_ptr<grpc::ServerCredentials> GrpcCredentials() const;

  // Makes `ssl_ctx` (an SSL_CTX*, the HTTPS front's) serve the current
  // pair to each new handshake and, with a client CA, require and verify
  // client certificates. REQUIRES: this outlives `ssl_ctx`.
  absl::Status ConfigureSslContext(void* ssl_ctx);

  // "subject=..., serial=..., expires ..." of the certificate served now.
  std::string Describe() const;

  bool mutual() const { return !options_.client_ca_file.empty(); }

 private:
  struct Pair;  // parsed certificate, chain, key and client CA store
  explicit TlsCertificates(TlsOptions options);
  static absl::StatusOr<std::shared_ptr<Pair>> ReadPair(const TlsOptions& options);
  // Writes `pair` for gRPC (identity.pem, client_ca.pem), then makes it
  // current.
  absl::Status Install(std::shared_ptr<const Pair> pair) ABSL_EXCLUSIVE_LOCKS_REQUIRED(install_mu_);
  std::shared_ptr<const Pair> current() const;
  static int OnCertificate(void* ssl, void* self);  // SSL_CTX_set_cert_cb

  const TlsOptions options_;
  std::string dir_;            // the private directory gRPC's provider watches
  absl::Mutex install_mu_;     // one Load/Reload at a time
  int64_t last_mtime_ ABSL_GUARDED_BY(install_mu_) = 0;  // of identity.pem, seconds
  mutable absl::Mutex mu_;
  std::shared_ptr<const Pair> current_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider_;
};

// True when `listen` (gRPC's or civetweb's form: "HOST:PORT", "[V6]:PORT",
// "PORT", "unix:PATH") is reachable only from this host: 127.0.0.0/8, ::1,
// localhost, a unix socket. A bare port or a wildcard is not.
bool IsLoopbackListen(std::string_view listen);

// sheafd's rule: a listener on a non-loopback address without TLS needs
// --insecure. INVALID_ARGUMENT naming the flag and saying what to add.
absl::Status CheckListenSecurity(std::string_view flag, std::string_view listen, bool tls, bool insecure);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_TLS_H_
