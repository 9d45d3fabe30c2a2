// sheafctl: query sheafd from a terminal.
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <cmath>
#include <cstdio>
#include <ctime>

#include "common/clock.h"
#include "common/duration.h"
#include "common/flags.h"
#include "common/json_writer.h"
#include "common/prom_format.h"
#include "health.grpc.pb.h"
#include "sheaf/v1/query.grpc.pb.h"
#include "tools/sheafctl_import.h"

namespace {

using namespace sheaf;

constexpr char kUsage[] = R"(sheafctl [flags] COMMAND [ARGS]

commands:
  query SELECTOR   stream samples of the matching series, e.g.
                   sheafctl query 'node_load1{host="web-1"}' --since 15m
  series SELECTOR  list the label sets of matching series
  labels [NAME]    label names in use; with NAME, that label's values
  stats            series and samples stored, disk bytes, uptime, version
  compact          cut heads into blocks and fully compact the store (slow)
  delete-series SELECTOR
                   delete the matching series for good (index, samples, rollups)
  health           the daemon's gRPC health status (exit 0 if SERVING)
  import FILE|-    Prometheus text (ms timestamps) or OpenMetrics into sheafd,
                   e.g. sheafctl import history.prom --backfill (docs/IMPORT.md))";

// Unix seconds, Unix milliseconds (13+ digits) or RFC 3339 UTC
// (2026-01-02T03:04:05Z).
bool ParseTime(const std::string& text, int64_t* ms) {
  if (text.empty()) return false;
  if (text.find_first_not_of("0123456789") == std::string::npos) {
    // At most 16 digits: seconds or milliseconds far past any real date,
    // and never an overflow (a 20-digit number once threw).
    if (text.size() > 16) return false;
    int64_t v = std::stoll(text);
    *ms = text.size() >= 13 ? v : v * 1000;
    return true;
  }
  std::tm tm = {};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr) return false;
  int64_t frac_ms = 0;
  if (*end == '.') {
    int digits = 0;
    for (++end; *end >= '0' && *end <= '9'; ++end, ++digits) {
      if (digits < 3) frac_ms = frac_ms * 10 + (*end - '0');
    }
    for (; digits < 3; ++digits) frac_ms *= 10;
  }
  if (std::string(end) != "Z") return false;
  *ms = static_cast<int64_t>(timegm(&tm)) * 1000 + frac_ms;
  return true;
}

std::string FormatTime(int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof(out), "%s.%03dZ", buf, static_cast<int>(((ms % 1000) + 1000) % 1000));
  return out;
}

std::string SeriesName(const google::protobuf::RepeatedPtrField<v1::Label>& labels) {
  std::string name, rest;
  for (const auto& l : labels) {
    if (l.name() == "__name__") {
      name = l.value();
      continue;
    }
    if (!rest.empty()) rest += ", ";
    rest += l.name() + "=" + JsonWriter::Quote(l.value());
  }
  return name + "{" + rest + "}";
}

const char* TypeName(v1::MetricType t) {
  switch (t) {
    case v1::METRIC_TYPE_COUNTER:
      return "counter";
    case v1::METRIC_TYPE_GAUGE:
      return "gauge";
    case v1::METRIC_TYPE_HISTOGRAM:
      return "histogram";
    default:
      return "untyped";
  }
}

int Fail(const char* what, const grpc::Status& s) {
  static constexpr const char* kCodes[] = {
      "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  int code = static_cast<int>(s.error_code());
  std::fprintf(stderr, "sheafctl: %s failed: %s: %s\n", what, code >= 0 && code <= 16 ? kCodes[code] : "?",
               s.error_message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string addr = "127.0.0.1:7470", format = "table", start_text, end_text;
  std::chrono::milliseconds timeout = std::chrono::seconds(30), since = std::chrono::hours(1), step{0};
  uint64_t limit = 10000, chunk = 0;
  FlagSet flags("sheafctl", kUsage);
  flags.String("addr", &addr, "sheafd's gRPC address");
  flags.Duration("timeout", &timeout, "deadline for the whole call");
  flags.Duration("since", &since, "query: how far back from --end (or now)");
  flags.String("start", &start_text, "query: start time (RFC 3339 UTC, or Unix seconds or ms); overrides --since");
  flags.String("end", &end_text, "query: end time (default now)");
  flags.Duration("step", &step, "query: one sample per step (the last in each step); 0 for every sample");
  flags.String("format", &format, "table, json (one object per line) or csv; import: auto, prometheus or openmetrics");
  flags.Uint("limit", &limit, "series: at most this many");
  flags.Uint("chunk", &chunk, "query: samples per streamed message (0: the daemon's default)");
  ctl::ImportFlags import_flags;
  ctl::RegisterImportFlags(flags, &import_flags);
  std::vector<std::string> args;
  if (auto exit_code = flags.ParseMain(argc, argv, &args)) return *exit_code;
  if (args.empty()) {
    std::fputs(flags.Usage().c_str(), stderr);
    return 2;
  }
  if (args[0] == "import") return ctl::RunImport(args, addr, format, timeout, import_flags);
  if (format != "table" && format != "json" && format != "csv") {
    std::fprintf(stderr, "sheafctl: --format must be table, json or csv\n");
    return 2;
  }
  const std::string command = args[0];
  auto channel = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);

  if (command == "query") {
    if (args.size() != 2) {
      std::fprintf(stderr, "sheafctl: usage: sheafctl query SELECTOR [--since 15m] [--step 1m]\n");
      return 2;
    }
    v1::QueryRequest req;
    req.set_selector(args[1]);
    int64_t end = WallClockMs(), start = 0;
    if (!end_text.empty() && !ParseTime(end_text, &end)) {
      std::fprintf(stderr, "sheafctl: --end \"%s\" is not a time (RFC 3339 UTC or Unix time)\n", end_text.c_str());
      return 2;
    }
    start = end - since.count();
    if (!start_text.empty() && !ParseTime(start_text, &start)) {
      std::fprintf(stderr, "sheafctl: --start \"%s\" is not a time (RFC 3339 UTC or Unix time)\n", start_text.c_str());
      return 2;
    }
    req.set_start_ms(start);
    req.set_end_ms(end);
    req.set_step_ms(step.count());
    req.set_max_samples_per_chunk(static_cast<uint32_t>(chunk));
    auto stub = v1::QueryService::NewStub(channel);
    auto reader = stub->Query(&context, req);
    v1::QueryResponse resp;
    bool continuing = false;  // the previous chunk's series goes on
    uint64_t series = 0, samples = 0;
    if (format == "csv") std::printf("series,timestamp_ms,value\n");
    while (reader->Read(&resp)) {
      for (const v1::SeriesChunk& c : resp.chunks()) {
        std::string name = SeriesName(c.labels());
        if (!continuing) ++series;
        samples += c.samples_size();
        if (format == "table") {
          if (!continuing) std::printf("%s  (%s)\n", name.c_str(), TypeName(c.type()));
          for (const auto& s : c.samples()) {
            std::printf("  %s  %s\n", FormatTime(s.timestamp_ms()).c_str(), FormatPromFloat(s.value()).c_str());
          }
        } else if (format == "csv") {
          std::string quoted = "\"";
          for (char ch : name) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
          quoted += "\"";
          for (const auto& s : c.samples()) {
            std::printf("%s,%lld,%s\n", quoted.c_str(), static_cast<long long>(s.timestamp_ms()),
                        FormatPromFloat(s.value()).c_str());
          }
        } else {
          std::string line = "{\"metric\":{";
          for (int i = 0; i < c.labels_size(); ++i) {
            if (i > 0) line += ",";
            line += JsonWriter::Quote(c.labels(i).name()) + ":" + JsonWriter::Quote(c.labels(i).value());
          }
          line += "},\"type\":\"" + std::string(TypeName(c.type())) + "\",\"samples\":[";
          for (int i = 0; i < c.samples_size(); ++i) {
            if (i > 0) line += ",";
            double v = c.samples(i).value();
            line += fmt::format("[{},{}]", c.samples(i).timestamp_ms(),
                                std::isfinite(v) ? FormatPromFloat(v) : JsonWriter::Quote(FormatPromFloat(v)));
          }
          line += "],\"last_chunk\":" + std::string(c.last_chunk() ? "true" : "false") + "}";
          std::printf("%s\n", line.c_str());
        }
        continuing = !c.last_chunk();
      }
      std::fflush(stdout);  // show series as they stream in
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) return Fail("query", status);
    if (format == "table")
      std::fprintf(stderr, "%llu series, %llu samples\n", static_cast<unsigned long long>(series),
                   static_cast<unsigned long long>(samples));
    return 0;
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
        families += (families.empty() ? "" : ",") + JsonWriter::Quote(name) + ":" + std::to_string(bytes);
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
