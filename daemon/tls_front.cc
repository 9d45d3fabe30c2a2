#include "daemon/tls_front.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "daemon/tls.h"

namespace sheaf::daemon {
namespace {

LogRateLimiter& HandshakeLogLimiter() {
  static LogRateLimiter limiter(10, std::chrono::minutes(1));
  return limiter;
}

std::string AddressText(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
    return fmt::format("{}:{}", host, port);
  }
  const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
  inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
  return fmt::format("[{}]:{}", host, ntohs(a->sin6_port));
}

// "HOST:PORT", "[V6]:PORT", "PORT" -> a listening socket, or an error.
absl::StatusOr<int> Listen(const std::string& listen) {
  std::string host, port;
  if (listen.starts_with("[")) {
    size_t close = listen.find("]:");
    if (close == std::string::npos) return absl::InvalidArgumentError("expected [ADDRESS]:PORT");
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
  } else if (size_t colon = listen.rfind(':'); colon != std::string::npos) {
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  } else {
    host = "0.0.0.0";  // civetweb's meaning of a bare port
    port = listen;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(found, freeaddrinfo);
  int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(std::strerror(errno));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, found->ai_addr, found->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
    const int e = errno;
    close(fd);
    return absl::InternalError(std::strerror(e));
  }
  return fd;
}

void SetTimeouts(int fd, std::chrono::milliseconds timeout) {
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

bool SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// The TLS handshake on non-blocking `fd`, within `timeout`. "" on success,
// else why it failed.
std::string Handshake(SSL* ssl, int fd, std::chrono::milliseconds timeout, const std::atomic<bool>& stopping) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    ERR_clear_error();
    const int rc = SSL_accept(ssl);
    if (rc == 1) break;
    const int err = SSL_get_error(ssl, rc);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      const unsigned long code = ERR_get_error();
      if (code == 0) return err == SSL_ERROR_SYSCALL ? "the client closed the connection" : "failed";
      char text[256];
      ERR_error_string_n(code, text, sizeof(text));
      return text;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || stopping) return "timed out";
    pollfd p{fd, static_cast<short>(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    poll(&p, 1, static_cast<int>(left.count()));
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return "";
}

}  // namespace

TlsFront::TlsFront(TlsFrontOptions options) : options_(std::move(options)) {}

TlsFront::~TlsFront() { Stop(); }

absl::StatusOr<std::unique_ptr<TlsFront>> TlsFront::Start(TlsFrontOptions options) {
  std::unique_ptr<TlsFront> front(new TlsFront(std::move(options)));
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError("HTTPS: cannot create an OpenSSL context");
  front->ssl_ctx_ = ctx;
  if (absl::Status s = front->options_.certificates->ConfigureSslContext(ctx); !s.ok()) return s;
  auto fd = Listen(front->options_.listen);
  if (!fd.ok()) {
    return absl::FailedPreconditionError(fmt::format(
        "cannot serve HTTPS on {}: {} (is the port taken or the address wrong? set --http-listen)",
        front->options_.listen, std::string(fd.status().message())));
  }
  front->listen_fd_ = *fd;
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  getsockname(front->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  front->port_ = ntohs(addr.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&addr)->sin_port
                                                 : reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  if (pipe2(front->wake_fd_, O_CLOEXEC) != 0) return absl::InternalError("HTTPS: pipe failed");
  front->acceptor_ = std::thread([f = front.get()] { f->AcceptLoop(); });
  return front;
}

void TlsFront::AcceptLoop() {
  static LogRateLimiter refused_log(10, std::chrono::minutes(1));
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_[0], POLLIN, 0}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) return;
    if (stopping_ || (p[1].revents & POLLIN)) return;
    if (!(p[0].revents & POLLIN)) continue;
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::string client = AddressText(addr);
    {
      absl::MutexLock lock(&mu_);
      if (active_ >= options_.max_connections) {
        ++refused_;
        LogLimited(refused_log, LogLevel::kWarn, "HTTPS: {} connections open (--http-threads); closed one from {} "
                   "({} so far)", active_, client, refused_);
        close(fd);
        continue;
      }
      ++active_;
      open_fds_.insert(fd);
    }
    std::thread([this, fd, client = std::move(client)]() mutable { Serve(fd, std::move(client)); }).detach();
  }
}

void TlsFront::Serve(int fd, std::string client) {
  SSL* ssl = SSL_new(static_cast<SSL_CTX*>(ssl_ctx_));
  int backend = -1;
  int backend_port = 0;
  auto finish = [&] {
    absl::MutexLock lock(&mu_);
    open_fds_.erase(fd);
    if (backend >= 0) open_fds_.erase(backend);
    if (backend_port != 0) clients_.erase(backend_port);
    if (ssl != nullptr) SSL_free(ssl);
    close(fd);
    if (backend >= 0) close(backend);
    --active_;  // last: Stop waits for this
  };
  if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) return finish();
  if (std::string error = Handshake(ssl, fd, options_.handshake_timeout, stopping_); !error.empty()) {
    LogLimited(HandshakeLogLimiter(), LogLevel::kWarn, "HTTPS: TLS handshake with {} failed: {}", client, error);
    return finish();
  }
  SetTimeouts(fd, options_.idle_timeout);
  backend = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(options_.backend_port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (backend < 0 || connect(backend, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    LogLimited(HandshakeLogLimiter(), LogLevel::kError, "HTTPS: cannot reach the HTTP server on port {}: {}",
               options_.backend_port, std::strerror(errno));
    return finish();
  }
  SetTimeouts(backend, options_.idle_timeout);
  {
    sockaddr_in local{};
    socklen_t len = sizeof(local);
    getsockname(backend, reinterpret_cast<sockaddr*>(&local), &len);
    absl::MutexLock lock(&mu_);
    if (stopping_) return finish();  // Stop already shut the open sockets down
    open_fds_.insert(backend);
    backend_port = ntohs(local.sin_port);
    clients_[backend_port] = client;
  }
  // Relay until either side closes. Reads from the client are TLS records
  // (SSL_pending: bytes already decrypted); civetweb bounds the plaintext
  // side with its request and keep-alive timeouts, the socket timeouts a
  // client that stops halfway through a record or stops reading.
  char buf[16 * 1024];
  for (;;) {
    bool from_client = SSL_pending(ssl) > 0;
    bool from_backend = false;
    if (!from_client) {
      pollfd p[2] = {{fd, POLLIN, 0}, {backend, POLLIN, 0}};
      if (poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      from_client = p[0].revents != 0;
      from_backend = p[1].revents != 0;
    }
    if (from_client) {
      const int n = SSL_read(ssl, buf, sizeof(buf));
      if (n <= 0 || !SendAll(backend, buf, static_cast<size_t>(n))) break;
    }
    if (from_backend) {
      const ssize_t n = recv(backend, buf, sizeof(buf), 0);
      if (n <= 0 || SSL_write(ssl, buf, static_cast<int>(n)) != n) break;
    }
  }
  ERR_clear_error();
  SSL_shutdown(ssl);  // close_notify, best effort
  finish();
}

std::string TlsFront::ClientFor(int backend_local_port) const {
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(backend_local_port);
  return it == clients_.end() ? "" : it->second;
}

void TlsFront::Stop() {
  if (stopping_.exchange(true)) return;
  if (wake_fd_[1] >= 0) (void)!write(wake_fd_[1], "x", 1);
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  for (int fd : wake_fd_) {
    if (fd >= 0) close(fd);
  }
  {
    absl::MutexLock lock(&mu_);
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);  // wakes the connections' threads
    mu_.Await(absl::Condition(+[](size_t* active) { return *active == 0; }, &active_));
  }
  if (ssl_ctx_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(ssl_ctx_));
}

}  // namespace sheaf::daemon
