// sheafd's HTTPS: a TLS front in front of civetweb's plaintext port.
//
// Why not civetweb's own TLS: Debian 12's libcivetweb (1.15) loads libssl
// with dlopen and looks up SSL_get_peer_certificate, which OpenSSL 3 no
// longer exports (it is a macro for SSL_get1_peer_certificate); every HTTPS
// connection then calls a null pointer in civetweb's worker (measured:
// SIGSEGV on the first request). So the front terminates TLS with OpenSSL
// itself (TlsCertificates: the current pair per handshake, client
// certificates for mutual TLS) and relays the plaintext bytes to civetweb,
// which listens on a loopback port of its own.
//
// One (detached) thread per connection, at most `max_connections` at once (more are
// closed at accept, counted and logged); a handshake must finish within
// `handshake_timeout`, and a connection whose client neither sends nor
// reads for `idle_timeout` is closed. civetweb sees the front's loopback
// address; ClientFor gives the client's real address for logs and
// handlers. No gRPC.
#ifndef SHEAF_DAEMON_TLS_FRONT_H_
#define SHEAF_DAEMON_TLS_FRONT_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace sheaf::daemon {

class TlsCertificates;

struct TlsFrontOptions {
  std::string listen;       // "HOST:PORT", "[V6]:PORT" or "PORT" (every address); port 0 picks one
  int backend_port = 0;     // civetweb's plaintext port on 127.0.0.1
  TlsCertificates* certificates = nullptr;  // outlives the front
  size_t max_connections = 64;
  std::chrono::milliseconds handshake_timeout{5000};
  std::chrono::milliseconds idle_timeout{5000};
};

class TlsFront {
 public:
  // Listens. FAILED_PRECONDITION naming the address when it cannot.
  static absl::StatusOr<std::unique_ptr<TlsFront>> Start(TlsFrontOptions options);
  ~TlsFront();  // Stop()s
  TlsFront(const TlsFront&) = delete;
  TlsFront& operator=(const TlsFront&) = delete;

  int port() const { return port_; }
  // "ADDRESS:PORT" of the client whose relayed connection reaches civetweb
  // from local port `backend_local_port`; "" if none (not ours).
  std::string ClientFor(int backend_local_port) const;
  // Closes the listener and every connection, joins the threads. Idempotent.
  void Stop();

 private:
  explicit TlsFront(TlsFrontOptions options);
  void AcceptLoop();
  void Serve(int client_fd, std::string client);

  const TlsFrontOptions options_;
  void* ssl_ctx_ = nullptr;  // SSL_CTX*
  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1};  // a pipe: written by Stop to end the accept loop
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  mutable absl::Mutex mu_;
  std::map<int, std::string> clients_ ABSL_GUARDED_BY(mu_);  // backend local port -> client address
  std::set<int> open_fds_ ABSL_GUARDED_BY(mu_);              // shut down by Stop
  size_t active_ ABSL_GUARDED_BY(mu_) = 0;                    // connection threads (detached) still running
  uint64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_TLS_FRONT_H_
