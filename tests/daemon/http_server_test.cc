// The HTTP server on its own, over real loopback sockets: routes, 404 and
// 405, decoded and repeated parameters, form bodies, size limits,
// keep-alive, gzip, handler errors, idle sockets, a taken port and stop.
#include "daemon/http_server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/support/net.h"

namespace sheaf::daemon {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

struct Reply {
  int status = 0;  // 0: no answer (closed or timed out)
  std::map<std::string, std::string> headers;
  std::string body;
};

// One client connection that can send several requests (keep-alive).
class Client {
 public:
  explicit Client(int port) : fd_(testing::ConnectLoopback(port)) {
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }
  bool connected() const { return fd_ >= 0; }

  bool Send(const std::string& bytes) {
    return write(fd_, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  }

  // Reads one response (its body by Content-Length, or to the end).
  Reply Read(bool head = false) {
    Reply r;
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return r;
    }
    std::string head_text = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    r.status = std::atoi(head_text.c_str() + head_text.find(' ') + 1);
    size_t pos = head_text.find("\r\n");
    while (pos != std::string::npos) {
      size_t next = head_text.find("\r\n", pos + 2);
      std::string line = head_text.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      size_t colon = line.find(':');
      if (colon != std::string::npos) r.headers[line.substr(0, colon)] = line.substr(colon + 2);
      pos = next;
    }
    if (head) return r;
    if (r.headers.contains("Content-Length")) {
      const size_t length = std::stoul(r.headers["Content-Length"]);
      while (buffer_.size() < length) {
        if (!Fill()) break;
      }
      r.body = buffer_.substr(0, length);
      buffer_.erase(0, std::min(length, buffer_.size()));
    } else {
      while (Fill()) {
      }
      r.body = std::move(buffer_);
    }
    return r;
  }

  Reply Get(const std::string& target, const std::string& extra_headers = "") {
    Send("GET " + target + " HTTP/1.1\r\nHost: x\r\n" + extra_headers + "\r\n");
    return Read();
  }

  // True once the server closed the connection (read returns 0).
  bool Closed() {
    char c;
    return read(fd_, &c, 1) == 0;
  }

 private:
  bool Fill() {
    char buf[65536];
    ssize_t n = read(fd_, buf, sizeof(buf));
    if (n <= 0) return false;
    buffer_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_;
  std::string buffer_;
};

// Echoes what the handler saw: method, path, parameters, body.
HttpResponse Echo(const HttpRequest& r) {
  std::string out = r.method + " " + r.path + "\n";
  for (const auto& [name, value] : r.params) out += "param " + name + "=" + value + "\n";
  if (!r.body.empty()) out += "body " + r.body + "\n";
  HttpResponse response;
  response.body = out;
  return response;
}

// A started server on a free loopback port that echoes on /echo.
std::unique_ptr<HttpServer> EchoServer(HttpServerOptions options) {
  options.listen = "127.0.0.1:0";
  auto server = std::make_unique<HttpServer>(options);
  server->Handle("/echo", {"GET", "POST"}, Echo);
  EXPECT_TRUE(server->Start().ok());
  return server;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void Start(HttpServerOptions options = {}) {
    options.listen = "127.0.0.1:0";
    server_ = std::make_unique<HttpServer>(options);
    server_->Handle("/echo", {"GET", "POST"}, Echo);
    server_->Handle("/get-only", {"GET"}, [](const HttpRequest&) { return HttpResponse::Text(200, "ok"); });
    server_->Handle("/big", {"GET"}, [](const HttpRequest&) {
      HttpResponse r;
      for (int i = 0; i < 2000; ++i) r.body += "metric_" + std::to_string(i) + "{a=\"b\"} 1\n";
      return r;
    });
    server_->Handle("/throw", {"GET"}, [](const HttpRequest&) -> HttpResponse { throw std::runtime_error("boom"); });
    server_->HandlePrefix("/api/v1/label/", {"GET"},
                          [](const HttpRequest& r) { return HttpResponse::Text(200, "prefix " + r.path); });
    server_->Handle("/api/v1/label/exact", {"GET"},
                    [](const HttpRequest&) { return HttpResponse::Text(200, "exact"); });
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_GT(server_->port(), 0);
  }
  void SetUp() override { Start(); }
  int port() const { return server_->port(); }

  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, RoutesExactPathsAndAnswers404Otherwise) {
  Client c(port());
  Reply r = c.Get("/echo");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "GET /echo\n");
  EXPECT_EQ(r.headers["Content-Type"], "text/plain; charset=utf-8");
  for (const char* path : {"/echo/more", "/", "/nothing", "/ECHO"}) {
    Reply missing = Client(port()).Get(path);
    EXPECT_EQ(missing.status, 404) << path;
    EXPECT_NE(missing.body.find("404 not found: "), std::string::npos) << missing.body;
    EXPECT_NE(missing.body.find("/echo"), std::string::npos) << "names what is served: " << missing.body;
  }
  // Prefix routes (the shape /api/v1/label/<name>/values needs); an exact
  // route wins over a prefix.
  EXPECT_EQ(Client(port()).Get("/api/v1/label/job/values").body, "prefix /api/v1/label/job/values\n");
  EXPECT_EQ(Client(port()).Get("/api/v1/label/exact").body, "exact\n");
  EXPECT_EQ(Client(port()).Get("/api/v1/label").status, 404);
}

TEST_F(HttpServerTest, OtherMethodsAre405WithAllowAndHeadIsGetWithoutBody) {
  Client c(port());
  c.Send("POST /get-only HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  Reply r = c.Read();
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers["Allow"], "GET");
  EXPECT_NE(r.body.find("POST"), std::string::npos) << r.body;
  c.Send("HEAD /get-only HTTP/1.1\r\nHost: x\r\n\r\n");
  Reply head = c.Read(/*head=*/true);
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.headers["Content-Length"], "3");
  // No body came: the next response on the connection is read intact.
  EXPECT_EQ(c.Get("/echo").body, "GET /echo\n");
}

TEST_F(HttpServerTest, QueryParametersAreDecodedAndMayRepeat) {
  Reply r = Client(port()).Get("/echo?match[]=up&match%5B%5D=%7Bjob%3D%22a+b%22%7D&empty=&flag&x=1%2B1");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body,
            "GET /echo\nparam match[]=up\nparam match[]={job=\"a b\"}\nparam empty=\nparam flag=\nparam x=1+1\n");
  // The path itself is decoded too.
  EXPECT_EQ(Client(port()).Get("/ech%6F").body, "GET /echo\n");
}

TEST_F(HttpServerTest, BadEscapesAre400) {
  for (const char* target : {"/echo?x=%zz", "/echo?x=%4", "/echo?%g1=1"}) {
    Reply r = Client(port()).Get(target);
    EXPECT_EQ(r.status, 400) << target;
    EXPECT_NE(r.body.find("invalid URL escape"), std::string::npos) << r.body;
  }
}

TEST_F(HttpServerTest, FormBodiesAddParametersAfterTheQueryString) {
  Client c(port());
  const std::string form = "match[]=a&match[]=%7B__name__%3D~%22x.*%22%7D";
  c.Send(
      "POST /echo?first=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
      "Content-Length: " +
      std::to_string(form.size()) + "\r\n\r\n" + form);
  Reply r = c.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "POST /echo\nparam first=1\nparam match[]=a\nparam match[]={__name__=~\"x.*\"}\n");
  // Any other body is kept as it came, chunked or not.
  c.Send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 5\r\n\r\nab\x01"
      "cd");
  EXPECT_EQ(c.Read().body, std::string("POST /echo\nbody ab\x01"
                                       "cd\n"));
  c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  EXPECT_EQ(c.Read().body, "POST /echo\nbody abcde\n");
}

TEST(HttpServerLimitsTest, BodiesAndHeadersPastTheLimitsAre413) {
  HttpServerOptions options;
  options.max_body_bytes = 1000;
  options.max_header_bytes = 4096;
  auto server_ptr = EchoServer(options);
  HttpServer& server = *server_ptr;
  {
    // Refused from the declared length, before the body is sent.
    Client c(server.port());
    c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n");
    Reply r = c.Read();
    EXPECT_EQ(r.status, 413);
    EXPECT_NE(r.body.find("larger than 1000 bytes"), std::string::npos) << r.body;
  }
  {
    // A chunked body is refused once it passes the limit.
    Client c(server.port());
    std::string chunk(600, 'x');
    c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n" + chunk + "\r\n258\r\n" +
           chunk + "\r\n0\r\n\r\n");
    EXPECT_EQ(c.Read().status, 413);
  }
  {
    // Exactly the limit passes.
    Client c(server.port());
    c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + std::string(1000, 'y'));
    EXPECT_EQ(c.Read().status, 200);
  }
  {
    // Headers past max_header_bytes: civetweb refuses the request.
    Client c(server.port());
    Reply r = c.Get("/echo", "X-Big: " + std::string(8000, 'h') + "\r\n");
    EXPECT_GE(r.status, 400) << r.body;
    EXPECT_LT(r.status, 500) << r.body;
  }
  // And the server goes on serving.
  EXPECT_EQ(Client(server.port()).Get("/echo").status, 200);
}

// A body that stops coming is refused after the request timeout, never
// handled as if it were whole.
TEST(HttpServerLimitsTest, ABodyCutShortIs400) {
  HttpServerOptions options;
  options.request_timeout = milliseconds(300);
  auto server = EchoServer(options);
  Client c(server->port());
  c.Send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
      "Content-Length: 100\r\n\r\nmatch[]=up");
  auto started = steady_clock::now();
  Reply r = c.Read();
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("10 of 100 bytes arrived"), std::string::npos) << r.body;
  EXPECT_LT(steady_clock::now() - started, seconds(5));
}

TEST_F(HttpServerTest, KeepAliveServesRequestsInTurnOnOneConnection) {
  Client c(port());
  for (int i = 0; i < 5; ++i) {
    Reply r = c.Get("/echo?i=" + std::to_string(i));
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "GET /echo\nparam i=" + std::to_string(i) + "\n");
    EXPECT_EQ(r.headers["Connection"], "keep-alive");
  }
}

TEST_F(HttpServerTest, AnswersAreGzippedForClientsThatAcceptIt) {
  Reply plain = Client(port()).Get("/big");
  ASSERT_EQ(plain.status, 200);
  EXPECT_FALSE(plain.headers.contains("Content-Encoding"));
  Reply gz = Client(port()).Get("/big", "Accept-Encoding: gzip, deflate\r\n");
  ASSERT_EQ(gz.status, 200);
  EXPECT_EQ(gz.headers["Content-Encoding"], "gzip");
  EXPECT_LT(gz.body.size() * 4, plain.body.size());
  std::string inflated(plain.body.size() + 16, '\0');
  z_stream zs{};
  ASSERT_EQ(inflateInit2(&zs, 15 + 16), Z_OK);
  zs.next_in = reinterpret_cast<Bytef*>(gz.body.data());
  zs.avail_in = static_cast<uInt>(gz.body.size());
  zs.next_out = reinterpret_cast<Bytef*>(inflated.data());
  zs.avail_out = static_cast<uInt>(inflated.size());
  EXPECT_EQ(inflate(&zs, Z_FINISH), Z_STREAM_END);
  inflated.resize(zs.total_out);
  inflateEnd(&zs);
  EXPECT_EQ(inflated, plain.body);
  // "q=0" refuses it; small answers are never compressed.
  EXPECT_FALSE(Client(port()).Get("/big", "Accept-Encoding: gzip;q=0\r\n").headers.contains("Content-Encoding"));
  EXPECT_FALSE(Client(port()).Get("/echo", "Accept-Encoding: gzip\r\n").headers.contains("Content-Encoding"));
}

TEST_F(HttpServerTest, AHandlerThatThrowsIs500AndTheServerGoesOn) {
  EXPECT_EQ(Client(port()).Get("/throw").status, 500);
  EXPECT_EQ(Client(port()).Get("/echo").status, 200);
}

TEST(HttpServerStartTest, ATakenPortIsFailedPreconditionNamingTheAddress) {
  HttpServerOptions options;
  options.listen = "127.0.0.1:0";
  HttpServer first(options);
  ASSERT_TRUE(first.Start().ok());
  options.listen = "127.0.0.1:" + std::to_string(first.port());
  HttpServer second(options);
  absl::Status s = second.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("cannot serve HTTP on " + options.listen), std::string::npos) << s;
  EXPECT_NE(s.message().find("--http-listen"), std::string::npos) << s;
  second.Stop();  // never started: nothing to do
}

// Each idle connection holds a worker until its request timeout: fewer
// than `threads` of them delay nobody, more delay a request by about the
// timeout per `threads` of them, never for ever; and they are closed.
TEST(HttpServerIdleTest, IdleSocketsDoNotBlockRequests) {
  HttpServerOptions options;
  options.threads = 4;
  options.request_timeout = milliseconds(1000);
  options.idle_timeout = milliseconds(1000);
  auto server_ptr = EchoServer(options);
  HttpServer& server = *server_ptr;

  std::vector<std::unique_ptr<Client>> idle;
  for (int i = 0; i < 3; ++i) idle.push_back(std::make_unique<Client>(server.port()));
  auto started = steady_clock::now();
  EXPECT_EQ(Client(server.port()).Get("/echo").status, 200);
  EXPECT_LT(steady_clock::now() - started, milliseconds(500)) << "3 idle sockets, 4 workers";

  // Twelve idle sockets: three waves of four timeouts at most.
  for (int i = 0; i < 9; ++i) idle.push_back(std::make_unique<Client>(server.port()));
  started = steady_clock::now();
  EXPECT_EQ(Client(server.port()).Get("/echo").status, 200);
  const auto waited = steady_clock::now() - started;
  EXPECT_LT(waited, seconds(5)) << "12 idle sockets, 4 workers, 1 s request timeout";
  // The server closed every idle one.
  for (auto& c : idle) EXPECT_TRUE(c->Closed());
}

TEST(HttpServerStopTest, StopIsPromptWithIdleAndKeptAliveConnections) {
  HttpServerOptions options;
  options.request_timeout = seconds(30);
  options.idle_timeout = seconds(30);
  auto server_ptr = EchoServer(options);
  HttpServer& server = *server_ptr;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(std::make_unique<Client>(server.port()));
  auto kept = std::make_unique<Client>(server.port());
  ASSERT_EQ(kept->Get("/echo").status, 200);  // now waiting for its next request
  auto started = steady_clock::now();
  server.Stop();
  EXPECT_LT(steady_clock::now() - started, milliseconds(2500));
  EXPECT_TRUE(kept->Closed());
  server.Stop();  // idempotent
}

TEST(FormParamsTest, DecodesLikeGo) {
  std::vector<std::pair<std::string, std::string>> params;
  std::string error;
  ASSERT_TRUE(ParseFormParams("a=1&&b=%2F+x&a=&c", &params, &error));
  EXPECT_EQ(params, (std::vector<std::pair<std::string, std::string>>{{"a", "1"}, {"b", "/ x"}, {"a", ""}, {"c", ""}}));
  EXPECT_FALSE(ParseFormParams("a=%", &params, &error));
  EXPECT_NE(error.find("invalid URL escape"), std::string::npos);
  std::string out;
  EXPECT_TRUE(DecodeFormComponent("%e2%82%AC", &out));
  EXPECT_EQ(out, "\xe2\x82\xac");
}

}  // namespace
}  // namespace sheaf::daemon
