// sheafd's HTTP server: civetweb (Debian's libcivetweb, already under
// prometheus-cpp) behind a small interface of routes and handlers that see
// the whole request. /metrics and /federate are handlers today; the
// Prometheus HTTP API, remote write and remote read come next (issue 9).
//
// Model: civetweb's thread per connection. `threads` workers each serve one
// connection at a time; a connection that sends nothing holds its worker
// for at most `request_timeout` (while it sends a request) or
// `idle_timeout` (between requests of a kept-alive connection), then is
// closed. So fewer than `threads` idle sockets never delay anyone, and
// more delay a request by at most those timeouts (docs/ARCHITECTURE.md has
// the figures). Handlers run on the worker threads: they may block (read
// the store), which holds that worker only.
//
// A handler may also answer with a stream (HttpResponse::stream: the web
// console's server-sent events), written on the worker for as long as it
// runs; it holds that worker, so streams are bounded by their caller.
//
// No gRPC, no prometheus-cpp: handlers are plain functions.
#ifndef SHEAF_DAEMON_HTTP_SERVER_H_
#define SHEAF_DAEMON_HTTP_SERVER_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"

struct mg_connection;
struct mg_context;

namespace sheaf::daemon {

class TlsCertificates;
class TlsFront;

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // URL-decoded, without the query string
  // Parameters of the query string, then of a form-encoded body
  // (application/x-www-form-urlencoded), decoded, in order. A name may
  // repeat (match[]).
  std::vector<std::pair<std::string, std::string>> params;
  // The body as received, unless it was a form (then it is in `params`).
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // as received
  std::string remote;                                        // "ADDRESS:PORT" of the client

  // Every value of parameter `name`, in order.
  std::vector<std::string> Params(std::string_view name) const;
  // The first value of parameter `name`; null if absent.
  const std::string* Param(std::string_view name) const;
  // The first header called `name` (any case); null if absent.
  const std::string* Header(std::string_view name) const;
};

// The writing end of a streamed answer (HttpResponse::stream).
class HttpStream {
 public:
  virtual ~HttpStream() = default;
  // Sends `data` at once. False when the client is gone, did not take the
  // bytes within the request timeout, or the server is stopping: then
  // return.
  virtual bool Write(std::string_view data) = 0;
  // True once the server is stopping: return within about a second.
  virtual bool stopping() const = 0;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // more headers (Retry-After, ...)
  // When set, the answer is a stream (server-sent events): the headers go
  // out without a length, then `stream` writes the body for as long as it
  // runs, on the connection's worker (which it holds: bound the number of
  // streams), and the connection closes when it returns. `body` is
  // ignored; never gzipped. Not called for HEAD (it is destroyed unrun).
  std::function<void(HttpStream&)> stream;

  // A short plain-text answer (errors): `message` and a newline.
  static HttpResponse Text(int status, std::string_view message);
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string listen = "127.0.0.1:9470";  // ADDRESS:PORT or PORT (all addresses); port 0 picks one
  size_t threads = 16;                    // connections served at once
  // How long a connection may take to send one request (line, headers,
  // body), and how long a kept-alive connection may wait for its next one.
  std::chrono::milliseconds request_timeout{5000};
  std::chrono::milliseconds idle_timeout{5000};
  size_t max_header_bytes = 16 * 1024;  // request line and headers; past it 413
  size_t max_body_bytes = 16ull << 20;  // a request body; past it 413
  size_t gzip_min_bytes = 1024;         // answers at least this large are gzipped for clients that accept it
  // Called after every answer with the route that served it (the path or
  // prefix it was registered with; "" when none matched: a bounded set),
  // the status and the seconds from the request to the answer sent. For
  // metrics: cheap and thread-safe.
  std::function<void(const std::string& route, int status, double seconds)> on_answer;
  // HTTPS: when set, `listen` speaks only TLS with these certificates
  // (outliving the server), through a TLS front (daemon/tls_front.h) that
  // relays to civetweb on a loopback port of its own. At most `threads`
  // TLS connections at once, as civetweb's.
  TlsCertificates* tls = nullptr;
};

// Thread-safe after Start. Routes are registered before Start.
class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options);
  ~HttpServer();  // Stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // `handler` answers requests for exactly `path` with one of `methods`
  // ("GET" also allows HEAD). Another method answers 405 with an Allow
  // header. REQUIRES: before Start; a path is registered once.
  void Handle(std::string path, std::vector<std::string> methods, HttpHandler handler);
  // The same for every path that starts with `prefix` (e.g.
  // "/api/v1/label/"); an exact route wins, then the longest prefix.
  void HandlePrefix(std::string prefix, std::vector<std::string> methods, HttpHandler handler);

  // Listens and starts the workers. FAILED_PRECONDITION naming the address
  // when it cannot listen (a taken port).
  absl::Status Start();
  int port() const { return port_; }

  // Stops accepting, closes idle connections, waits for running handlers.
  // Idempotent.
  void Stop();

 private:
  struct Route {
    std::vector<std::string> methods;
    HttpHandler handler;
    std::string name;  // the path or prefix it was registered with
  };

  static int OnRequest(mg_connection* conn, void* self);
  static int OnLogMessage(const mg_connection* conn, const char* message);
  int Serve(mg_connection* conn);
  const Route* Find(std::string_view path) const;
  void Send(mg_connection* conn, const HttpRequest& request, HttpResponse response);

  HttpServerOptions options_;
  std::map<std::string, Route, std::less<>> exact_;
  std::map<std::string, Route, std::less<>> prefixes_;
  mg_context* context_ = nullptr;
  int port_ = 0;
  std::once_flag stop_once_;
  std::atomic<bool> stopping_{false};  // streams end when set
  std::unique_ptr<TlsFront> tls_front_;  // with options_.tls; port_ is its port
  int civetweb_port_ = 0;                // civetweb's own (loopback with TLS)
};

// "a%20b+c" -> "a b c" as in a query string or form. False on a bad
// escape ("%zz", "%4"), which Prometheus answers with 400.
bool DecodeFormComponent(std::string_view in, std::string* out);

// Appends the parameters of a query string or form body ("a=1&b=2&a=3").
// False (and *error set) on a bad escape.
bool ParseFormParams(std::string_view text, std::vector<std::pair<std::string, std::string>>* params,
                     std::string* error);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_HTTP_SERVER_H_
