// The measurement behind sheafd's choice of HTTP server library
// (docs/ARCHITECTURE.md, "The HTTP server"): one answer of a fixed size on
// GET /metrics, served either by sheafd's HttpServer (civetweb) or by
// cpp-httplib (Debian's libcpp-httplib-dev), with the same worker count and
// timeouts, so tools/bench_http_servers.sh can time both with `ab` and with
// idle sockets held open. Built only where cpp-httplib is installed.
//   http_servers_compare civetweb|httplib PORT [BODY_BYTES] [THREADS]
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "daemon/http_server.h"

namespace {

volatile sig_atomic_t stop = 0;

void OnSignal(int) { stop = 1; }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: http_servers_compare civetweb|httplib PORT [BODY_BYTES] [THREADS]\n");
    return 2;
  }
  const std::string which = argv[1];
  const int port = std::atoi(argv[2]);
  const size_t body_bytes = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 9500;
  const size_t threads = argc > 4 ? std::strtoul(argv[4], nullptr, 10) : 16;
  // Text like an exposition: compressible, so gzip (which neither side
  // does here: ab does not ask for it) would not distort the comparison.
  std::string body;
  while (body.size() < body_bytes) body += "sheaf_example_metric{label=\"value\"} 12345\n";
  body.resize(body_bytes);
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);

  if (which == "civetweb") {
    sheaf::daemon::HttpServerOptions options;
    options.listen = "127.0.0.1:" + std::to_string(port);
    options.threads = threads;
    options.gzip_min_bytes = SIZE_MAX;
    sheaf::daemon::HttpServer server(options);
    server.Handle("/metrics", {"GET"}, [&](const sheaf::daemon::HttpRequest&) {
      sheaf::daemon::HttpResponse r;
      r.content_type = "text/plain; version=0.0.4";
      r.body = body;
      return r;
    });
    if (auto s = server.Start(); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
    while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    server.Stop();
    return 0;
  }
  if (which == "httplib") {
    httplib::Server server;
    // The same model and timeouts as sheafd's: `threads` workers, 5 s to
    // send a request, 5 s idle between kept-alive requests.
    server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    server.set_read_timeout(5, 0);
    server.set_keep_alive_timeout(5);
    server.set_tcp_nodelay(true);
    server.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
      res.set_content(body, "text/plain; version=0.0.4");
    });
    std::thread watcher([&] {
      while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      server.stop();
    });
    const bool ok = server.listen("127.0.0.1", port);
    stop = 1;
    watcher.join();
    return ok ? 0 : 1;
  }
  std::fprintf(stderr, "unknown server \"%s\": civetweb or httplib\n", which.c_str());
  return 2;
}
