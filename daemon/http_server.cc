#include "daemon/http_server.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>

#include "common/log.h"
#include "daemon/tls_front.h"

namespace sheaf::daemon {
namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && EqualsIgnoreCase(text.substr(0, prefix.size()), prefix);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// True if the client takes gzip ("gzip", "gzip;q=0.5", "x, gzip"), not
// when it says "gzip;q=0".
bool AcceptsGzip(const std::string* accept_encoding) {
  if (accept_encoding == nullptr) return false;
  std::string_view rest = *accept_encoding;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    if (!StartsWithIgnoreCase(item, "gzip")) continue;
    std::string_view params = item.substr(4);
    params.remove_prefix(std::min(params.find_first_not_of(' '), params.size()));
    if (params.empty()) return true;
    if (params.front() != ';') continue;  // "gzipx"
    size_t q = params.find("q=");
    if (q == std::string_view::npos) return true;
    return std::strtod(std::string(params.substr(q + 2)).c_str(), nullptr) > 0;
  }
  return false;
}

// gzip at the fastest level: answers are built once per request, and
// level 1 already shrinks the text formats 8-10x.
bool Gzip(std::string_view in, std::string* out) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
  out->resize(deflateBound(&zs, in.size()));
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out->data());
  zs.avail_out = static_cast<uInt>(out->size());
  const int rc = deflate(&zs, Z_FINISH);
  out->resize(zs.total_out);
  deflateEnd(&zs);
  return rc == Z_STREAM_END;
}

// The address to connect to when waking the server: the one it listens on,
// or loopback when it listens on every address.
std::string WakeAddress(const std::string& listen) {
  size_t colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? "" : listen.substr(0, colon);
  return host.empty() || host == "0.0.0.0" ? "127.0.0.1" : host;
}

void Connect(const std::string& host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) == 1) {
    (void)connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  }
  close(fd);
}

}  // namespace

bool DecodeFormComponent(std::string_view in, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out->push_back(' ');
    } else if (in[i] == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out->push_back(in[i]);
    }
  }
  return true;
}

bool ParseFormParams(std::string_view text, std::vector<std::pair<std::string, std::string>>* params,
                     std::string* error) {
  while (!text.empty()) {
    size_t amp = text.find('&');
    std::string_view item = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view() : text.substr(amp + 1);
    if (item.empty()) continue;
    size_t eq = item.find('=');
    std::string name, value;
    if (!DecodeFormComponent(item.substr(0, eq), &name) ||
        (eq != std::string_view::npos && !DecodeFormComponent(item.substr(eq + 1), &value))) {
      *error = fmt::format("invalid URL escape in \"{}\"", item.substr(0, 64));
      return false;
    }
    params->emplace_back(std::move(name), std::move(value));
  }
  return true;
}

std::vector<std::string> HttpRequest::Params(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [n, v] : params) {
    if (n == name) out.push_back(v);
  }
  return out;
}

const std::string* HttpRequest::Param(std::string_view name) const {
  for (const auto& [n, v] : params) {
    if (n == name) return &v;
  }
  return nullptr;
}

const std::string* HttpRequest::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (EqualsIgnoreCase(n, name)) return &v;
  }
  return nullptr;
}

HttpResponse HttpResponse::Text(int status, std::string_view message) {
  HttpResponse r;
  r.status = status;
  r.body = std::string(message) + "\n";
  return r;
}

HttpServer::HttpServer(HttpServerOptions options) : options_(std::move(options)) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(std::string path, std::vector<std::string> methods, HttpHandler handler) {
  Route route{std::move(methods), std::move(handler), path};
  exact_[std::move(path)] = std::move(route);
}

void HttpServer::HandlePrefix(std::string prefix, std::vector<std::string> methods, HttpHandler handler) {
  Route route{std::move(methods), std::move(handler), prefix};
  prefixes_[std::move(prefix)] = std::move(route);
}

absl::Status HttpServer::Start() {
  static std::once_flag init;
  std::call_once(init, [] { mg_init_library(0); });
  // With TLS civetweb listens on loopback behind the TLS front
  // (tls_front.h says why not civetweb's own TLS).
  const bool tls = options_.tls != nullptr;
  const std::vector<std::pair<const char*, std::string>> settings = {
      {"listening_ports", tls ? std::string("127.0.0.1:0") : options_.listen},
      {"num_threads", std::to_string(std::max<size_t>(options_.threads, 1))},
      {"request_timeout_ms", std::to_string(options_.request_timeout.count())},
      {"enable_keep_alive", "yes"},
      {"keep_alive_timeout_ms", std::to_string(options_.idle_timeout.count())},
      {"max_request_size", std::to_string(options_.max_header_bytes)},
      {"enable_directory_listing", "no"},
      // Headers and body go out in two writes: without this, Nagle and
      // delayed ACKs add 40 ms to every kept-alive request (measured).
      {"tcp_nodelay", "1"},
  };
  std::vector<const char*> config;
  for (const auto& [name, value] : settings) {
    config.push_back(name);
    config.push_back(value.c_str());
  }
  config.push_back(nullptr);
  mg_callbacks callbacks{};
  // Every request comes here, before civetweb would look for files: this
  // server has no document root, and routes are ours.
  callbacks.begin_request = [](mg_connection* conn) { return OnRequest(conn, mg_get_user_data(mg_get_context(conn))); };
  callbacks.log_message = OnLogMessage;
  unsigned code = 0;
  char error[256] = "";
  mg_error_data error_data{&code, error, sizeof(error)};
  mg_init_data init_data{&callbacks, this, config.data()};
  context_ = mg_start2(&init_data, &error_data);
  if (context_ == nullptr) {
    return absl::FailedPreconditionError(
        fmt::format("cannot serve HTTP on {}: {} (is the port taken or the address "
                    "wrong? set --http-listen)",
                    options_.listen, error[0] ? error : "civetweb failed to start"));
  }
  mg_server_port ports[4];
  if (mg_get_server_ports(context_, 4, ports) > 0) civetweb_port_ = ports[0].port;
  port_ = civetweb_port_;
  if (tls) {
    TlsFrontOptions front;
    front.listen = options_.listen;
    front.backend_port = civetweb_port_;
    front.certificates = options_.tls;
    front.max_connections = std::max<size_t>(options_.threads, 1);
    front.handshake_timeout = options_.request_timeout;
    front.idle_timeout = std::max(options_.request_timeout, options_.idle_timeout);
    auto started = TlsFront::Start(std::move(front));
    if (!started.ok()) return started.status();  // ~HttpServer stops civetweb
    tls_front_ = *std::move(started);
    port_ = tls_front_->port();
  }
  return absl::OkStatus();
}

void HttpServer::Stop() {
  std::call_once(stop_once_, [this] {
    stopping_ = true;  // before mg_stop, which waits for the streams' workers
    if (tls_front_) tls_front_->Stop();  // closes the TLS connections first
    if (context_ == nullptr) return;
    // civetweb's listener notices the stop only when its poll() wakes,
    // every 2 s; a connection wakes it at once (measured: 1.6 s -> ms).
    std::atomic<bool> stopped{false};
    std::thread waker([&] {
      const std::string host = tls_front_ ? "127.0.0.1" : WakeAddress(options_.listen);
      while (!stopped) {
        Connect(host, civetweb_port_);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
    mg_stop(context_);
    stopped = true;
    waker.join();
    context_ = nullptr;
  });
}

int HttpServer::OnRequest(mg_connection* conn, void* self) {
  // Debian's civetweb gives its workers 100 KiB stacks (its build's
  // USE_STACK_SIZE); a handler (serializing /metrics, gzip, later a PromQL
  // parse 256 levels deep) needs more, and under AddressSanitizer even
  // /metrics overflowed it. So the request is served on a thread with the
  // default stack while the civetweb worker waits: one thread start per
  // request (tens of microseconds).
  int status = 500;
  std::thread worker([&] {
    try {
      status = static_cast<HttpServer*>(self)->Serve(conn);
      return;
    } catch (const std::exception& e) {
      // Nothing may unwind through civetweb's C frames.
      LogError("HTTP: {}", e.what());
    } catch (...) {
      LogError("HTTP: unknown exception");
    }
    mg_disable_connection_keep_alive(conn);
    mg_send_http_error(conn, 500, "%s", "internal error\n");
    status = 500;
  });
  worker.join();
  return status;
}

int HttpServer::OnLogMessage(const mg_connection*, const char* message) {
  static LogRateLimiter limiter(10, std::chrono::minutes(1));
  LogLimited(limiter, LogLevel::kWarn, "HTTP: {}", message);
  return 1;
}

const HttpServer::Route* HttpServer::Find(std::string_view path) const {
  if (auto it = exact_.find(path); it != exact_.end()) return &it->second;
  const Route* best = nullptr;
  size_t best_length = 0;
  for (const auto& [prefix, route] : prefixes_) {
    if (path.starts_with(prefix) && prefix.size() >= best_length) {
      best = &route;
      best_length = prefix.size();
    }
  }
  return best;
}

int HttpServer::Serve(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  HttpRequest request;
  request.method = info->request_method ? info->request_method : "";
  request.remote = fmt::format("{}:{}", info->remote_addr, info->remote_port);
  if (tls_front_) {  // the client behind the TLS front's relayed connection
    if (std::string client = tls_front_->ClientFor(info->remote_port); !client.empty()) request.remote = client;
  }
  for (int i = 0; i < info->num_headers; ++i) {
    request.headers.emplace_back(info->http_headers[i].name, info->http_headers[i].value);
  }
  const auto started = std::chrono::steady_clock::now();
  static const std::string kNoRoute;
  const std::string* route_name = &kNoRoute;
  auto reply = [&](HttpResponse response) {
    const int status = response.status;
    Send(conn, request, std::move(response));
    if (options_.on_answer) {
      options_.on_answer(*route_name, status,
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    }
    return status;
  };
  if (info->local_uri == nullptr) return reply(HttpResponse::Text(400, "bad request target"));
  request.path = info->local_uri;

  const Route* route = Find(request.path);
  if (route != nullptr) route_name = &route->name;
  if (route == nullptr) {
    std::string paths;
    for (const auto& [path, r] : exact_) paths += (paths.empty() ? "" : ", ") + path;
    return reply(HttpResponse::Text(404, fmt::format("404 not found: {} (sheafd serves {})", request.path, paths)));
  }
  const auto& methods = route->methods;
  auto allowed = [&](std::string_view m) { return std::find(methods.begin(), methods.end(), m) != methods.end(); };
  if (!allowed(request.method) && !(request.method == "HEAD" && allowed("GET"))) {
    std::string allow;
    for (const auto& m : methods) allow += (allow.empty() ? "" : ", ") + m;
    HttpResponse r = HttpResponse::Text(
        405, fmt::format("method {} not allowed on {}; use {}", request.method, request.path, allow));
    r.headers.emplace_back("Allow", allow);
    return reply(std::move(r));
  }

  std::string error;
  if (info->query_string != nullptr && !ParseFormParams(info->query_string, &request.params, &error)) {
    return reply(HttpResponse::Text(400, "bad query string: " + error));
  }

  // The body, bounded: a declared length past the limit is refused before
  // reading, a chunked one once it passes the limit. The connection is
  // closed after either, since the rest of the body is not read.
  const std::string* transfer_encoding = request.Header("Transfer-Encoding");
  const bool chunked = transfer_encoding != nullptr && StartsWithIgnoreCase(*transfer_encoding, "chunked");
  const auto too_large = [&] {
    mg_disable_connection_keep_alive(conn);
    return reply(HttpResponse::Text(413, fmt::format("request body larger than {} bytes", options_.max_body_bytes)));
  };
  if (info->content_length > 0 && static_cast<unsigned long long>(info->content_length) > options_.max_body_bytes) {
    return too_large();
  }
  if (info->content_length > 0 || chunked) {
    char buf[64 * 1024];
    for (;;) {
      int n = mg_read(conn, buf, sizeof(buf));
      if (n == 0) break;
      if (n < 0) {
        mg_disable_connection_keep_alive(conn);
        return reply(HttpResponse::Text(400, "could not read the request body"));
      }
      if (request.body.size() + static_cast<size_t>(n) > options_.max_body_bytes) return too_large();
      request.body.append(buf, static_cast<size_t>(n));
    }
    // civetweb ends a body that stops coming (request timeout) as if it
    // were complete: a short one is an error, never half a form.
    if (info->content_length > 0 && request.body.size() != static_cast<size_t>(info->content_length)) {
      mg_disable_connection_keep_alive(conn);
      return reply(
          HttpResponse::Text(400, fmt::format("request body: {} of {} bytes arrived within the request timeout",
                                              request.body.size(), info->content_length)));
    }
  }
  const std::string* content_type = request.Header("Content-Type");
  if (content_type != nullptr && StartsWithIgnoreCase(*content_type, "application/x-www-form-urlencoded")) {
    if (!ParseFormParams(request.body, &request.params, &error)) {
      return reply(HttpResponse::Text(400, "bad form body: " + error));
    }
    request.body.clear();
  }
  return reply(route->handler(request));
}

namespace {

class ConnectionStream final : public HttpStream {
 public:
  ConnectionStream(mg_connection* conn, const std::atomic<bool>* stopping) : conn_(conn), stopping_(stopping) {}
  bool Write(std::string_view data) override {
    if (stopping()) return false;
    return data.empty() || mg_write(conn_, data.data(), data.size()) == static_cast<int>(data.size());
  }
  bool stopping() const override { return stopping_->load(std::memory_order_relaxed); }

 private:
  mg_connection* const conn_;
  const std::atomic<bool>* const stopping_;
};

}  // namespace

void HttpServer::Send(mg_connection* conn, const HttpRequest& request, HttpResponse response) {
  if (response.stream) {
    // No length: the body ends when the connection closes.
    mg_disable_connection_keep_alive(conn);
    mg_response_header_start(conn, response.status);
    mg_response_header_add(conn, "Content-Type", response.content_type.c_str(), -1);
    for (const auto& [name, value] : response.headers) mg_response_header_add(conn, name.c_str(), value.c_str(), -1);
    mg_response_header_send(conn);
    if (request.method == "HEAD") return;
    ConnectionStream stream(conn, &stopping_);
    response.stream(stream);
    return;
  }
  std::string gzipped;
  // Not over an encoding of the handler's own (remote read's snappy).
  const bool encoded = std::any_of(response.headers.begin(), response.headers.end(), [](const auto& h) {
    return h.first.size() == std::string_view("Content-Encoding").size() &&
           StartsWithIgnoreCase(h.first, "Content-Encoding");
  });
  const bool gzip = !encoded && response.body.size() >= options_.gzip_min_bytes &&
                    AcceptsGzip(request.Header("Accept-Encoding")) && Gzip(response.body, &gzipped);
  const std::string& body = gzip ? gzipped : response.body;
  mg_response_header_start(conn, response.status);
  mg_response_header_add(conn, "Content-Type", response.content_type.c_str(), -1);
  mg_response_header_add(conn, "Content-Length", std::to_string(body.size()).c_str(), -1);
  if (gzip) mg_response_header_add(conn, "Content-Encoding", "gzip", -1);
  for (const auto& [name, value] : response.headers) mg_response_header_add(conn, name.c_str(), value.c_str(), -1);
  mg_response_header_send(conn);
  if (request.method != "HEAD" && !body.empty()) mg_write(conn, body.data(), body.size());
}

}  // namespace sheaf::daemon
