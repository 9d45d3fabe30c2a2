#include "tools/sheafctl_tail.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <thread>

#include "common/json_writer.h"
#include "common/prom_format.h"
#include "sheaf/v1/query.grpc.pb.h"
#include "tools/ctl_util.h"

namespace sheaf::ctl {
namespace {

// SIGINT/SIGTERM write a byte here (the one async-signal-safe way out of a
// handler); a thread reading it cancels the call.
int signal_pipe[2] = {-1, -1};
constexpr char kSignalled = 1, kDone = 2;

void OnSignal(int) {
  const char byte = kSignalled;
  [[maybe_unused]] ssize_t n = write(signal_pipe[1], &byte, 1);
}

std::string CsvQuote(const std::string& text) {
  std::string out = "\"";
  for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// The lines for one series of a response, appended to *out.
void FormatSeries(const v1::TailSeries& series, const std::string& format, std::string* out) {
  const std::string name = SeriesName(series.labels());
  for (const v1::Sample& s : series.samples()) {
    if (format == "json") {
      JsonWriter w;
      w.BeginObject();
      w.Key("metric");
      w.BeginObject();
      for (const v1::Label& l : series.labels()) {
        w.Key(l.name());
        w.String(l.value());
      }
      w.EndObject();
      w.Key("type");
      w.String(TypeName(series.type()));
      w.Key("timestamp_ms");
      w.Int(s.timestamp_ms());
      w.Key("value");
      w.Double(s.value());
      w.EndObject();
      *out += w.str();
    } else if (format == "csv") {
      *out += CsvQuote(name) + "," + std::to_string(s.timestamp_ms()) + "," + FormatPromFloat(s.value());
    } else {
      *out += FormatTime(s.timestamp_ms()) + "  " + name + "  " + FormatPromFloat(s.value());
    }
    *out += "\n";
  }
}

}  // namespace

int RunTail(const std::vector<std::string>& args, const std::shared_ptr<grpc::Channel>& channel,
            const std::string& format) {
  if (args.size() < 2) {
    std::fprintf(stderr, "sheafctl: usage: sheafctl tail SELECTOR... (e.g. 'node_load1{host=~\"web-.*\"}')\n");
    return 2;
  }
  if (format != "table" && format != "json" && format != "csv") {
    std::fprintf(stderr, "sheafctl: --format must be table, json or csv\n");
    return 2;
  }
  if (pipe2(signal_pipe, O_CLOEXEC) != 0) {
    std::perror("sheafctl: pipe");
    return 1;
  }
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  auto stub = v1::QueryService::NewStub(channel);
  grpc::ClientContext context;  // no deadline: a tail runs until stopped
  auto stream = stub->Tail(&context);
  std::atomic<bool> interrupted{false};
  std::thread watcher([&] {
    char byte = 0;
    while (read(signal_pipe[0], &byte, 1) < 0 && errno == EINTR) {
    }
    if (byte == kSignalled) {
      interrupted = true;
      context.TryCancel();
    }
  });

  for (size_t i = 1; i < args.size(); ++i) {
    v1::TailRequest request;
    request.mutable_subscribe()->set_subscription_id(i);
    request.mutable_subscribe()->set_selector(args[i]);
    if (!stream->Write(request)) break;  // the call ended: Finish says why
  }
  bool refused = false;
  v1::TailResponse response;
  std::string lines;
  while (!refused && stream->Read(&response)) {
    for (const v1::TailAck& ack : response.acks()) {
      if (ack.code() == 0) continue;
      const uint64_t id = ack.subscription_id();
      std::fprintf(stderr, "sheafctl: tail %s: %s\n", id >= 1 && id < args.size() ? args[id].c_str() : "?",
                   ack.error().c_str());
      refused = true;
    }
    if (response.missed_samples() > 0) {
      std::fprintf(stderr,
                   "sheafctl: missed %llu samples: they arrived faster than this output was read (sheafd keeps "
                   "--tail-buffer-samples per tail)\n",
                   static_cast<unsigned long long>(response.missed_samples()));
    }
    lines.clear();
    for (const v1::TailSeries& series : response.series()) FormatSeries(series, format, &lines);
    std::fwrite(lines.data(), 1, lines.size(), stdout);
    std::fflush(stdout);  // live: each response as it comes
  }
  if (refused) context.TryCancel();
  grpc::Status status = stream->Finish();
  const char done = kDone;
  [[maybe_unused]] ssize_t n = write(signal_pipe[1], &done, 1);
  watcher.join();
  if (refused) return 2;
  if (interrupted || status.ok()) return 0;
  return Fail("tail", status);
}

}  // namespace sheaf::ctl
