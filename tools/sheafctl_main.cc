// sheafctl: query sheafd from a terminal.
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <cmath>
#include <cstdio>
#include <ctime>

#include "client/channel.h"
#include "common/clock.h"
#include "common/duration.h"
#include "common/flags.h"
#include "common/json_writer.h"
#include "common/prom_format.h"
#include "health.grpc.pb.h"
#include "sheaf/v1/query.grpc.pb.h"
#include "tools/ctl_util.h"
#include "tools/sheafctl_import.h"
#include "tools/sheafctl_query.h"
#include "tools/sheafctl_tail.h"

namespace {

using namespace sheaf;
using namespace sheaf::ctl;

constexpr char kUsage[] = R"(sheafctl [flags] COMMAND [ARGS]

commands:
  query EXPR       a PromQL query: with --step a range query over --since
                   (or --start/--end), else an instant query at --time (now);
                   a bare selector without --step prints the raw samples, e.g.
                   sheafctl query 'sum by (mode) (rate(node_cpu_seconds_total[5m]))' --step 1m
                   sheafctl query 'node_load1{host="web-1"}' --since 15m
  series SELECTOR  list the label sets of matching series
  labels [NAME]    label names in use; with NAME, that label's values
  stats            series and samples stored, disk bytes, uptime, version
  compact          cut heads into blocks and fully compact the store (slow)
  delete-series SELECTOR
                   delete the matching series for good (index, samples, rollups)
  snapshot [NAME]  a consistent copy of the store under sheafd's --snapshot-dir
                   (hard links), for backups; restore with sheafd --data-dir on it
  health           the daemon's gRPC health status (exit 0 if SERVING)
  import FILE|-    Prometheus text (ms timestamps) or OpenMetrics into sheafd,
                   e.g. sheafctl import history.prom --backfill (docs/IMPORT.md)
  tail SELECTOR... the matching samples live as sheafd stores them, until Ctrl-C, e.g.
                   sheafctl tail 'node_load1{host=~"web-.*"}')";

}  // namespace

int main(int argc, char** argv) {
  std::string addr = "127.0.0.1:7470", format = "table", start_text, end_text, time_text;
  std::chrono::milliseconds timeout = std::chrono::seconds(30), since = std::chrono::hours(1), step{0};
  uint64_t limit = 10000, chunk = 0;
  FlagSet flags("sheafctl", kUsage);
  flags.String("addr", &addr, "sheafd's gRPC address");
  flags.Duration("timeout", &timeout, "deadline for the whole call");
  flags.Duration("since", &since, "query: how far back from --end (or now)");
  flags.String("start", &start_text, "query: start time (RFC 3339 UTC, or Unix seconds or ms); overrides --since");
  flags.String("end", &end_text, "query: end time (default now)");
  flags.Duration("step", &step, "query: a range query with this step; 0 for an instant query (or raw samples)");
  flags.String("time", &time_text, "query: the time of an instant query (default now)");
  flags.String("format", &format, "table, json or csv; import: auto, prometheus or openmetrics");
  flags.Uint("limit", &limit, "series: at most this many");
  flags.Uint("chunk", &chunk, "query: samples per streamed message (0: the daemon's default)");
  client::SecurityFlags security;
  client::RegisterSecurityFlags(flags, &security);
  ImportFlags import_flags;
  RegisterImportFlags(flags, &import_flags);
  std::vector<std::string> args;
  if (auto exit_code = flags.ParseMain(argc, argv, &args)) return *exit_code;
  if (args.empty()) {
    std::fputs(flags.Usage().c_str(), stderr);
    return 2;
  }
  auto made = client::NewChannel(addr, security);
  if (!made.ok()) {
    std::fprintf(stderr, "sheafctl: %s\n", std::string(made.status().message()).c_str());
    return 2;
  }
  const std::shared_ptr<grpc::Channel> channel = *std::move(made);
  if (args[0] == "import") return RunImport(args, channel, format, timeout, import_flags);
  if (args[0] == "tail") return RunTail(args, channel, format);
  if (format != "table" && format != "json" && format != "csv") {
    std::fprintf(stderr, "sheafctl: --format must be table, json or csv\n");
    return 2;
  }
  const std::string command = args[0];
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);

  if (command == "query") {
    if (args.size() != 2) {
      std::fprintf(stderr,
                   "sheafctl: usage: sheafctl query EXPR [--time T | --since D | --start T --end T] [--step D]\n");
      return 2;
    }
    QueryOptions q;
    q.expr = args[1];
    q.format = format;
    q.time = time_text;
    q.start = start_text;
    q.end = end_text;
    q.since = since;
    q.step = step;
    q.chunk = static_cast<uint32_t>(chunk);
    return RunQuery(q, channel, &context);
  }
  if (command == "series") {
    if (args.size() != 2) {
      std::fprintf(stderr, "sheafctl: usage: sheafctl series SELECTOR\n");
      return 2;
    }
    v1::ListSeriesRequest req;
    req.set_selector(args[1]);
    req.set_limit(static_cast<uint32_t>(limit));
    v1::ListSeriesResponse resp;
    grpc::Status status = v1::QueryService::NewStub(channel)->ListSeries(&context, req, &resp);
    if (!status.ok()) return Fail("series", status);
    for (const auto& s : resp.series()) {
      if (format == "json") {
        std::string line = "{";
        for (int i = 0; i < s.labels_size(); ++i) {
          if (i > 0) line += ",";
          line += JsonWriter::Quote(s.labels(i).name()) + ":" + JsonWriter::Quote(s.labels(i).value());
        }
        std::printf("%s}\n", line.c_str());
      } else {
        std::printf("%s\n", SeriesName(s.labels()).c_str());
      }
    }
    if (resp.truncated())
      std::fprintf(stderr, "(more than %llu series match; raise --limit)\n", static_cast<unsigned long long>(limit));
    return 0;
  }
  if (command == "stats") {
    v1::StatsResponse resp;
    grpc::Status status = v1::QueryService::NewStub(channel)->Stats(&context, v1::StatsRequest(), &resp);
    if (!status.ok()) return Fail("stats", status);
    auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
    if (format == "json") {
      std::string families;
      for (const auto& [name, bytes] : resp.column_family_bytes()) {
        if (!families.empty()) families += ',';
        families += JsonWriter::Quote(name);
        families += ':';
        families += std::to_string(bytes);
      }
      std::printf(
          "{\"series\":%llu,\"samples\":%llu,\"storage_bytes\":%llu,\"agents\":%llu,\"uptime_seconds\":%.3f,"
          "\"head_samples\":%llu,\"pending_compaction_bytes\":%llu,\"write_stalls\":%llu,"
          "\"column_family_bytes\":{%s},\"version\":%s,\"cuts\":%llu,\"rollups\":%llu,"
          "\"maintenance_failures\":%llu,\"last_maintenance_error\":%s,\"writable\":%s,\"write_error\":%s}\n",
          u(resp.series()), u(resp.samples()), u(resp.storage_bytes()), u(resp.agents()), resp.uptime_seconds(),
          u(resp.head_samples()), u(resp.pending_compaction_bytes()), u(resp.write_stalls()), families.c_str(),
          JsonWriter::Quote(resp.version()).c_str(), u(resp.cuts()), u(resp.rollups()), u(resp.maintenance_failures()),
          JsonWriter::Quote(resp.last_maintenance_error()).c_str(), resp.writable() ? "true" : "false",
          JsonWriter::Quote(resp.write_error()).c_str());
    } else {
      std::printf(
          "series                    %llu\nsamples                   %llu\nstorage_bytes             %llu\n"
          "agents                    %llu\nhead_samples              %llu\npending_compaction_bytes  %llu\n"
          "write_stalls              %llu\nuptime_seconds            %.0f\nversion                   %s\n"
          "cuts                      %llu\nrollups                   %llu\nmaintenance_failures      %llu\n"
          "writable                  %s\n",
          u(resp.series()), u(resp.samples()), u(resp.storage_bytes()), u(resp.agents()), u(resp.head_samples()),
          u(resp.pending_compaction_bytes()), u(resp.write_stalls()), resp.uptime_seconds(), resp.version().c_str(),
          u(resp.cuts()), u(resp.rollups()), u(resp.maintenance_failures()), resp.writable() ? "yes" : "no");
      if (!resp.last_maintenance_error().empty()) {
        std::printf("last_maintenance_error    %s\n", resp.last_maintenance_error().c_str());
      }
      if (!resp.write_error().empty()) std::printf("write_error               %s\n", resp.write_error().c_str());
      for (const auto& [name, bytes] : resp.column_family_bytes()) {
        std::printf("  bytes[%s]%*s%llu\n", name.c_str(), static_cast<int>(std::max<size_t>(1, 17 - name.size())), "",
                    u(bytes));
      }
    }
    return 0;
  }
  if (command == "labels") {
    auto stub = v1::QueryService::NewStub(channel);
    std::vector<std::string> out;
    grpc::Status status;
    bool truncated = false;
    if (args.size() == 1) {
      v1::LabelNamesResponse resp;
      status = stub->LabelNames(&context, v1::LabelNamesRequest(), &resp);
      out.assign(resp.names().begin(), resp.names().end());
      truncated = resp.truncated();
    } else {
      v1::LabelValuesRequest req;
      req.set_name(args[1]);
      v1::LabelValuesResponse resp;
      status = stub->LabelValues(&context, req, &resp);
      out.assign(resp.values().begin(), resp.values().end());
      truncated = resp.truncated();
    }
    if (!status.ok()) return Fail("labels", status);
    for (const auto& v : out) std::printf("%s\n", v.c_str());
    if (truncated) std::fprintf(stderr, "(more exist; the first %zu are shown)\n", out.size());
    return 0;
  }
  if (command == "compact") {
    v1::CompactResponse resp;
    grpc::Status status = v1::AdminService::NewStub(channel)->Compact(&context, v1::CompactRequest(), &resp);
    if (!status.ok()) return Fail("compact", status);
    std::printf("storage_bytes_before %llu\nstorage_bytes_after  %llu\nseconds              %.1f\n",
                static_cast<unsigned long long>(resp.storage_bytes_before()),
                static_cast<unsigned long long>(resp.storage_bytes_after()), resp.seconds());
    return 0;
  }
  if (command == "delete-series") {
    if (args.size() != 2) {
      std::fprintf(stderr, "sheafctl: usage: sheafctl delete-series SELECTOR (e.g. 'm{secret!=\"\"}')\n");
      return 2;
    }
    v1::DeleteSeriesRequest req;
    req.set_selector(args[1]);
    v1::DeleteSeriesResponse resp;
    grpc::Status status = v1::AdminService::NewStub(channel)->DeleteSeries(&context, req, &resp);
    if (!status.ok()) return Fail("delete-series", status);
    std::printf("deleted %llu series\n", static_cast<unsigned long long>(resp.deleted()));
    return 0;
  }
  if (command == "snapshot") {
    if (args.size() > 2) {
      std::fprintf(stderr, "sheafctl: usage: sheafctl snapshot [NAME]\n");
      return 2;
    }
    v1::SnapshotRequest req;
    if (args.size() == 2) req.set_name(args[1]);
    v1::SnapshotResponse resp;
    grpc::Status status = v1::AdminService::NewStub(channel)->Snapshot(&context, req, &resp);
    if (!status.ok()) return Fail("snapshot", status);
    std::printf("%s\nfiles %u, %llu bytes, %.2f s\n", resp.path().c_str(), resp.files(),
                static_cast<unsigned long long>(resp.bytes()), resp.seconds());
    return 0;
  }
  if (command == "health") {
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status status = grpc::health::v1::Health::NewStub(channel)->Check(&context, req, &resp);
    if (!status.ok()) return Fail("health", status);
    std::printf("%s\n", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status()).c_str());
    return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
  }
  std::fprintf(stderr, "sheafctl: unknown command \"%s\"\n\n%s", command.c_str(), flags.Usage().c_str());
  return 2;
}
