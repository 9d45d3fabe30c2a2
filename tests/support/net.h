// Small network helpers for tests: an HTTP GET over loopback, raw HTTP
// requests (whole answers or streamed ones), a TCP relay
// that counts the bytes it forwards (to see what really crosses the wire)
// and an HTTP server answering every request with one fixed body.
#ifndef SHEAF_TESTS_SUPPORT_NET_H_
#define SHEAF_TESTS_SUPPORT_NET_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace sheaf::testing {

struct HttpResponse {
  int status = 0;  // 0 if the request failed
  std::string body;
};

// GET http://127.0.0.1:port/path with a 10 s bound on the whole exchange.
HttpResponse HttpGet(int port, const std::string& path);

// A TCP connection to 127.0.0.1:port, or -1. The caller closes it.
int ConnectLoopback(int port);

// The answer to a raw HTTP request: status line and headers, then body.
struct RawHttpReply {
  int status = 0;    // 0: no answer (closed or timed out)
  std::string head;  // the status line and headers, without the blank line
  std::string body;
};

// Sends `request` byte for byte over a fresh loopback connection and reads
// the answer until the server closes it (send Connection: close), with a
// 10 s bound on each read: for requests HttpGet cannot make (any method,
// hostile headers).
RawHttpReply RawHttpExchange(int port, const std::string& request);

// "POST `path` HTTP/1.1" with Host, Connection: close, `headers` (each
// "Name: value") and Content-Length, then `body`: a request for
// RawHttpExchange.
std::string RawPostRequest(const std::string& path, const std::vector<std::string>& headers, const std::string& body);

// A raw HTTP request whose answer streams (server-sent events): connects,
// sends `request` and keeps the connection open to read the answer as it
// comes, each read bounded to 10 s.
class RawHttpStream {
 public:
  RawHttpStream(int port, const std::string& request);
  ~RawHttpStream();
  RawHttpStream(const RawHttpStream&) = delete;
  RawHttpStream& operator=(const RawHttpStream&) = delete;
  // Whether the connection was made and the whole request sent.
  bool sent() const { return sent_; }
  // Reads until what has come holds `what`; false if the server closed
  // the connection or a read timed out first.
  bool ReadUntil(const std::string& what);
  // Closes the connection now (the destructor does it otherwise).
  void Close();
  // All that has come so far.
  const std::string& received() const { return received_; }

 private:
  int fd_ = -1;
  bool sent_ = false;
  std::string received_;
};

// Listens on 127.0.0.1 (port 0: chosen by the kernel) and relays every
// accepted connection to 127.0.0.1:target_port.
class CountingRelay {
 public:
  explicit CountingRelay(int target_port);
  ~CountingRelay();
  int port() const { return port_; }
  uint64_t client_to_server_bytes() const { return up_; }

 private:
  void AcceptLoop();
  int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> up_{0};
  std::thread acceptor_;
  std::vector<std::thread> pumps_;
};

// Listens on 127.0.0.1 (a port the kernel chooses) and answers every HTTP
// request with `body` (200, text/plain 0.0.4), one connection at a time,
// closing each after the answer: a scrape target of any size without a
// process. A client gets at most 5 s to send its request.
class StaticHttpServer {
 public:
  explicit StaticHttpServer(std::string body);
  ~StaticHttpServer();
  int port() const { return port_; }
  uint64_t requests() const { return requests_; }

 private:
  void Serve();
  const std::string response_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> requests_{0};
  std::thread server_;
};

}  // namespace sheaf::testing

#endif  // SHEAF_TESTS_SUPPORT_NET_H_
