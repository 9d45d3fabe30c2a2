#include "agent/agent_metrics.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <future>
#include <initializer_list>
#include <mutex>
#include <numeric>
#include <string_view>
#include <thread>
#include <utility>

#include "common/log.h"
#include "common/prom_format.h"
#include "model/labels.h"

namespace sheaf::agent {
namespace {

using LabelPairs = std::initializer_list<std::pair<std::string_view, std::string_view>>;

// Builds the exposition text one family at a time.
class TextWriter {
 public:
  // HELP and TYPE of family `name`; its samples follow.
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void Sample(std::string_view name, LabelPairs labels, uint64_t value) { Line(name, labels, std::to_string(value)); }
  void Sample(std::string_view name, LabelPairs labels, double value) { Line(name, labels, FormatPromFloat(value)); }

  // A family of one unlabelled sample.
  template <typename T>
  void Single(std::string_view name, std::string_view type, std::string_view help, T value) {
    Family(name, type, help);
    Sample(name, {}, value);
  }

  // A counter family with one sample per reason; nothing while there is no
  // reason yet (an empty family says nothing a scrape could use).
  void ByReason(std::string_view name, std::string_view help, const std::map<std::string, uint64_t>& counts) {
    if (counts.empty()) return;
    Family(name, "counter", help);
    for (const auto& [reason, n] : counts) Sample(name, {{"reason", reason}}, n);
  }

  std::string Take() { return std::move(out_); }

 private:
  void Line(std::string_view name, LabelPairs labels, std::string_view value) {
    out_ += name;
    char sep = '{';
    for (const auto& [label, label_value] : labels) {
      out_ += sep;
      sep = ',';
      out_ += label;
      out_ += '=';
      out_ += model::QuoteLabelValue(label_value);
    }
    if (sep == ',') out_ += '}';
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }

  std::string out_;
};

void RenderHistogram(TextWriter& w, std::string_view name, std::string_view help, const LatencyHistogram& h) {
  w.Family(name, "histogram", help);
  const std::string bucket = fmt::format("{}_bucket", name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < LatencyHistogram::kBounds.size(); ++i) {
    cumulative += h.counts[i];
    w.Sample(bucket, {{"le", FormatPromFloat(LatencyHistogram::kBounds[i])}}, cumulative);
  }
  cumulative += h.counts.back();
  w.Sample(bucket, {{"le", "+Inf"}}, cumulative);
  w.Sample(fmt::format("{}_sum", name), {}, h.sum);
  w.Sample(fmt::format("{}_count", name), {}, cumulative);
}

void RenderScrapeTargets(TextWriter& w, const std::vector<ScrapeTargetFigures>& targets) {
  if (targets.empty()) return;
  // The URL is a label too: two targets may share job and instance, and a
  // family must not repeat a label set.
  const auto family = [&](std::string_view name, std::string_view type, std::string_view help, auto value_of) {
    w.Family(name, type, help);
    for (const ScrapeTargetFigures& t : targets) {
      w.Sample(name, {{"job", t.job}, {"instance", t.instance}, {"url", t.url}}, value_of(t));
    }
  };
  using T = const ScrapeTargetFigures&;
  family("sheaf_agent_scrape_target_up", "gauge", "1 if the last scrape of the local target succeeded, else 0.",
         [](T t) { return uint64_t{t.up ? 1u : 0u}; });
  family("sheaf_agent_scrape_target_duration_seconds", "gauge", "How long the last scrape of the local target took.",
         [](T t) { return t.last_duration_seconds; });
  family("sheaf_agent_scrape_target_samples", "gauge", "Samples kept from the last scrape of the local target.",
         [](T t) { return t.last_samples; });
  family("sheaf_agent_scrape_target_scrapes_total", "counter", "Scrapes of the local target.",
         [](T t) { return t.scrapes; });
  family("sheaf_agent_scrape_target_failures_total", "counter", "Failed scrapes of the local target.",
         [](T t) { return t.failures; });
}

bool ParsePort(std::string_view text, int* port) {
  if (text.empty() || text.size() > 5) return false;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  *port = value;
  return value <= 65535;
}

// civetweb's listener notices mg_stop only when its poll() wakes, every 2 s;
// a connection wakes it at once. Connects to `address` until *done.
void WakeListener(const std::string& address, int port, const std::atomic<bool>* done) {
  const bool v6 = !address.empty() && address.front() == '[';
  const std::string host = address.substr(v6 ? 1 : 0, address.rfind(v6 ? "]:" : ":") - (v6 ? 1 : 0));
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&storage);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1 || IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr)) {
      a->sin6_addr = in6addr_loopback;
    }
    length = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&storage);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1 || a->sin_addr.s_addr == htonl(INADDR_ANY)) {
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    length = sizeof(sockaddr_in);
  }
  while (!done->load()) {
    const int fd = socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
      (void)connect(fd, reinterpret_cast<sockaddr*>(&storage), length);
      close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Writes a whole answer; HEAD gets the headers only.
void Reply(mg_connection* conn, bool head, int status, const char* content_type, std::string_view body,
           const char* allow = nullptr) {
  mg_response_header_start(conn, status);
  mg_response_header_add(conn, "Content-Type", content_type, -1);
  mg_response_header_add(conn, "Content-Length", std::to_string(body.size()).c_str(), -1);
  if (allow != nullptr) mg_response_header_add(conn, "Allow", allow, -1);
  mg_response_header_send(conn);
  if (!head && !body.empty()) mg_write(conn, body.data(), body.size());
}

}  // namespace

void LatencyHistogram::Observe(double seconds) {
  const auto it = std::lower_bound(kBounds.begin(), kBounds.end(), seconds);
  ++counts[static_cast<size_t>(it - kBounds.begin())];
  sum += seconds;
}

uint64_t LatencyHistogram::count() const { return std::accumulate(counts.begin(), counts.end(), uint64_t{0}); }

std::string RenderAgentMetrics(const AgentMetricsSnapshot& s) {
  TextWriter w;
  w.Family("sheaf_agent_build_info", "gauge", "The agent's identity and version; always 1.");
  w.Sample("sheaf_agent_build_info", {{"agent_id", s.agent_id}, {"version", s.version}}, uint64_t{1});
  w.Single("sheaf_agent_daemon_connected", "gauge", "1 while a healthy daemon is chosen to send to, else 0.",
           uint64_t{s.current_daemon.empty() ? 0u : 1u});
  if (!s.current_daemon.empty()) {
    w.Family("sheaf_agent_current_daemon", "gauge", "The daemon the agent sends to; always 1.");
    w.Sample("sheaf_agent_current_daemon", {{"daemon", s.current_daemon}}, uint64_t{1});
  }

  w.Single("sheaf_agent_collections_total", "counter", "Collection rounds.", s.collections);
  w.Single("sheaf_agent_samples_collected_total", "counter",
           "Samples collected from the host and the local scrape targets, after relabeling.", s.samples_collected);
  w.Single("sheaf_agent_series_dropped_invalid_total", "counter",
           "Series the batch builder dropped as invalid (names, labels).", s.series_dropped_invalid);
  w.ByReason("sheaf_agent_samples_dropped_total", "Samples dropped and never to be sent, by reason.",
             s.samples_dropped_by_reason);
  w.ByReason("sheaf_agent_batches_dropped_total", "Batches dropped and never to be sent, by reason.",
             s.batches_dropped_by_reason);

  w.Single("sheaf_agent_batches_spooled_total", "counter", "Batches written to the spool.", s.batches_spooled);
  w.Single("sheaf_agent_batches_sent_total", "counter", "Batches written to a daemon's stream (retries included).",
           s.batches_sent);
  w.Single("sheaf_agent_batches_acked_total", "counter", "Batches a daemon acknowledged as durable.", s.batches_acked);
  w.Single("sheaf_agent_samples_spooled_total", "counter", "Samples written to the spool.", s.samples_spooled);
  w.Single("sheaf_agent_samples_sent_total", "counter", "Samples written to a daemon's stream (retries included).",
           s.samples_sent);
  w.Single("sheaf_agent_samples_acked_total", "counter", "Samples a daemon acknowledged as durable.", s.samples_acked);

  w.Single("sheaf_agent_spool_bytes", "gauge", "Bytes of the spool's segment files on disk.", s.spool_bytes);
  w.Single("sheaf_agent_spool_batches_unacked", "gauge", "Batches in the spool waiting for an acknowledgement.",
           s.spool_batches_unacked);
  w.Single("sheaf_agent_spool_oldest_age_seconds", "gauge",
           "Age of the oldest unacknowledged batch in the spool; 0 when there is none.", s.spool_oldest_age_seconds);

  // The results partition the streams: "limited" (over a limit of sheafd's
  // --limits, waited out as told) is not counted again as "failed".
  w.Family("sheaf_agent_streams_total", "counter", "Push streams to a daemon that ended, by result.");
  w.Sample("sheaf_agent_streams_total", {{"result", "ok"}}, s.streams_ok);
  w.Sample("sheaf_agent_streams_total", {{"result", "failed"}}, s.streams_failed - s.streams_limited);
  w.Sample("sheaf_agent_streams_total", {{"result", "limited"}}, s.streams_limited);
  w.Single("sheaf_agent_reconnects_total", "counter", "Connections to a daemon made again after one was lost.",
           s.reconnects);
  w.Single("sheaf_agent_daemon_switches_total", "counter", "Changes of the daemon the agent sends to.",
           s.daemon_switches);
  w.Single("sheaf_agent_sequence_conflicts_total", "counter",
           "Acks showing a daemon holds sequences this agent never sent (a shared or restored identity).",
           s.sequence_conflicts);
  w.Single("sheaf_agent_acked_sequence", "gauge", "The highest batch sequence a daemon acknowledged.",
           s.acked_sequence);
  RenderHistogram(w, "sheaf_agent_ack_latency_seconds",
                  "Time from a batch written to a stream to the daemon's acknowledgement.", s.ack_latency);
  RenderScrapeTargets(w, s.scrape_targets);
  return w.Take();
}

absl::StatusOr<std::string> ParseMetricsListen(const std::string& listen, bool* loopback) {
  const auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(fmt::format(
        "--metrics-listen \"{}\": {}; give HOST:PORT with an IP address, e.g. 127.0.0.1:9475", listen, why));
  };
  std::string host;
  std::string_view port_text;
  if (!listen.empty() && listen.front() == '[') {
    const size_t close = listen.find("]:");
    if (close == std::string::npos) return invalid("an IPv6 address needs the form [ADDRESS]:PORT");
    host = listen.substr(1, close - 1);
    port_text = std::string_view(listen).substr(close + 2);
  } else {
    const size_t colon = listen.rfind(':');
    if (colon != std::string::npos) host = listen.substr(0, colon);
    port_text = colon == std::string::npos ? std::string_view(listen) : std::string_view(listen).substr(colon + 1);
  }
  int port = 0;
  if (!ParsePort(port_text, &port)) return invalid("the port is not a number from 0 to 65535");
  if (host.empty() || host == "localhost") host = "127.0.0.1";

  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    *loopback = (ntohl(v4.s_addr) >> 24) == 127;
    return fmt::format("{}:{}", host, port);
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    *loopback = IN6_IS_ADDR_LOOPBACK(&v6);
    return fmt::format("[{}]:{}", host, port);
  }
  return invalid(fmt::format("\"{}\" is not an IP address", host));
}

AgentMetricsServer::AgentMetricsServer(SnapshotFn snapshot, std::string address)
    : snapshot_(std::move(snapshot)), address_(std::move(address)) {}

absl::StatusOr<std::unique_ptr<AgentMetricsServer>> AgentMetricsServer::Start(std::string listen, SnapshotFn snapshot) {
  AgentMetricsServerOptions options;
  options.listen = std::move(listen);
  return Start(std::move(options), std::move(snapshot));
}

absl::StatusOr<std::unique_ptr<AgentMetricsServer>> AgentMetricsServer::Start(AgentMetricsServerOptions options,
                                                                              SnapshotFn snapshot) {
  bool loopback = true;
  absl::StatusOr<std::string> address = ParseMetricsListen(options.listen, &loopback);
  if (!address.ok()) return address.status();
  if (!loopback) {
    LogWarn(
        "--metrics-listen {}: the agent's /metrics (its identity, daemon and targets) is reachable from other "
        "hosts; use 127.0.0.1:PORT unless that is meant",
        *address);
  }
  static std::once_flag init;
  std::call_once(init, [] { mg_init_library(0); });

  std::unique_ptr<AgentMetricsServer> server(new AgentMetricsServer(std::move(snapshot), *address));
  const std::string threads = std::to_string(std::max<size_t>(options.threads, 1));
  const std::string request_timeout_ms = std::to_string(options.request_timeout.count());
  const std::string max_request_bytes = std::to_string(options.max_request_bytes);
  // Name, value pairs, one pair a line.
  // clang-format off
  const char* config[] = {
      "listening_ports", server->address_.c_str(),
      "num_threads", threads.c_str(),
      // Accepted connections waiting for a worker, and the kernel's queue
      // before that: a flood waits there, bounded.
      "connection_queue", "16",
      "listen_backlog", "16",
      "request_timeout_ms", request_timeout_ms.c_str(),
      // A scrape comes every 15 s or so: a kept-alive connection would hold
      // a worker between scrapes for nothing.
      "enable_keep_alive", "no",
      "max_request_size", max_request_bytes.c_str(),
      "enable_directory_listing", "no",
      "tcp_nodelay", "1",
      nullptr,
  };
  // clang-format on
  mg_callbacks callbacks{};
  callbacks.begin_request = OnRequest;  // every request, before civetweb would look for files
  callbacks.log_message = OnLogMessage;
  unsigned code = 0;
  char error[256] = "";
  mg_error_data error_data{&code, error, sizeof(error)};
  mg_init_data init_data{&callbacks, server.get(), config};
  server->context_ = mg_start2(&init_data, &error_data);
  if (server->context_ == nullptr) {
    return absl::FailedPreconditionError(
        fmt::format("cannot serve the agent's /metrics on {}: {} (is the port taken? set --metrics-listen)",
                    server->address_, error[0] ? error : "civetweb failed to start"));
  }
  mg_server_port ports[2];
  if (mg_get_server_ports(server->context_, 2, ports) > 0) server->port_ = ports[0].port;
  return server;
}

AgentMetricsServer::~AgentMetricsServer() {
  if (context_ == nullptr) return;
  std::atomic<bool> stopped{false};
  std::thread waker(WakeListener, address_, port_, &stopped);
  mg_stop(context_);
  stopped = true;
  waker.join();
}

int AgentMetricsServer::OnRequest(mg_connection* conn) {
  const auto* self = static_cast<const AgentMetricsServer*>(mg_get_user_data(mg_get_context(conn)));
  return self->Serve(conn);
}

int AgentMetricsServer::OnLogMessage(const mg_connection*, const char* message) {
  static LogRateLimiter limiter(10, std::chrono::minutes(1));
  LogLimited(limiter, LogLevel::kWarn, "agent /metrics: {}", message);
  return 1;
}

int AgentMetricsServer::Serve(mg_connection* conn) const {
  const mg_request_info* info = mg_get_request_info(conn);
  const std::string_view method = info->request_method != nullptr ? info->request_method : "";
  const std::string_view path = info->local_uri != nullptr ? info->local_uri : "";
  const bool head = method == "HEAD";
  constexpr char kText[] = "text/plain; charset=utf-8";
  if (path != "/metrics") {
    Reply(conn, head, 404, kText, "404 not found: sheaf-agent serves only /metrics\n");
    return 404;
  }
  if (method != "GET" && !head) {
    Reply(conn, false, 405, kText, fmt::format("method {} not allowed on /metrics; use GET\n", method), "GET, HEAD");
    return 405;
  }
  // Debian's civetweb gives its workers 100 KiB stacks (see
  // daemon/http_server.cc); the snapshot is the agent's code and rendering
  // formats text, so both run on a thread with the default stack while the
  // worker waits. Nothing may unwind through civetweb's C frames.
  std::string body;
  bool ok = false;
  try {
    body = std::async(std::launch::async, [this] { return RenderAgentMetrics(snapshot_()); }).get();
    ok = true;
  } catch (const std::exception& e) {
    LogError("agent /metrics: {}", e.what());
  } catch (...) {
    LogError("agent /metrics: unknown exception");
  }
  if (!ok) {
    Reply(conn, head, 500, kText, "internal error\n");
    return 500;
  }
  Reply(conn, head, 200, kAgentMetricsContentType, body);
  return 200;
}

}  // namespace sheaf::agent
