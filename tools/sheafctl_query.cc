// sheafctl query. The answer is printed as it streams in: a series is
// printed once its last chunk arrived (JSON and tables need it whole), so
// memory holds one series, not the answer.
#include "tools/sheafctl_query.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/clock.h"
#include "common/json_writer.h"
#include "common/prom_format.h"
#include "model/matcher.h"
#include "sheaf/v1/query.grpc.pb.h"
#include "tools/ctl_util.h"

namespace sheaf::ctl {
namespace {

std::string CsvQuote(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"') out += '"';
    out += ch;
  }
  return out + "\"";
}

// Prometheus' API writes times as Unix seconds (with a fraction) and values as strings.
void JsonPoint(JsonWriter& w, int64_t ms, double v) {
  w.BeginArray();
  w.Double(static_cast<double>(ms) / 1000);
  w.String(FormatPromApiFloat(v));
  w.EndArray();
}

// Prints a PromQL answer in the chosen format.
class Printer {
 public:
  explicit Printer(std::string format) : format_(std::move(format)) {}

  void Begin(v1::ResultType type, const std::string& string_result, int64_t time_ms) {
    type_ = type;
    if (format_ == "json") {
      std::printf("{\"resultType\":\"%s\",\"result\":", TypeWord(type));
      if (type == v1::RESULT_TYPE_STRING) {
        JsonWriter w;
        w.BeginArray();
        w.Double(static_cast<double>(time_ms) / 1000);
        w.String(string_result);
        w.EndArray();
        std::printf("%s}\n", w.str().c_str());
        done_ = true;
      } else if (type != v1::RESULT_TYPE_SCALAR) {
        std::printf("[");
      }
    } else if (format_ == "csv") {
      std::printf("series,timestamp_ms,value\n");
      if (type == v1::RESULT_TYPE_STRING)
        std::printf("\"\",%lld,%s\n", static_cast<long long>(time_ms), CsvQuote(string_result).c_str());
    } else if (type == v1::RESULT_TYPE_STRING) {
      std::printf("%s\n", string_result.c_str());
    }
  }

  void Series(const google::protobuf::RepeatedPtrField<v1::Label>& labels, const std::vector<v1::Sample>& points) {
    ++series_;
    points_ += points.size();
    if (format_ == "json") {
      if (type_ == v1::RESULT_TYPE_SCALAR) {
        JsonWriter w;
        if (!points.empty()) JsonPoint(w, points[0].timestamp_ms(), points[0].value());
        std::printf("%s", w.str().c_str());
        return;
      }
      JsonWriter w;
      w.BeginObject();
      w.Key("metric");
      w.BeginObject();
      for (const auto& l : labels) {
        w.Key(l.name());
        w.String(l.value());
      }
      w.EndObject();
      if (type_ == v1::RESULT_TYPE_VECTOR) {
        w.Key("value");
        if (!points.empty()) JsonPoint(w, points[0].timestamp_ms(), points[0].value());
      } else {
        w.Key("values");
        w.BeginArray();
        for (const auto& p : points) JsonPoint(w, p.timestamp_ms(), p.value());
        w.EndArray();
      }
      w.EndObject();
      std::printf("%s%s", series_ > 1 ? "," : "", w.str().c_str());
      return;
    }
    std::string name = labels.empty() ? "{}" : SeriesName(labels);
    if (format_ == "csv") {
      for (const auto& p : points) {
        std::printf("%s,%lld,%s\n", CsvQuote(name).c_str(), static_cast<long long>(p.timestamp_ms()),
                    FormatPromFloat(p.value()).c_str());
      }
      return;
    }
    if (type_ == v1::RESULT_TYPE_VECTOR || type_ == v1::RESULT_TYPE_SCALAR) {
      // Held back so that the value column lines up.
      for (const auto& p : points)
        rows_.emplace_back(type_ == v1::RESULT_TYPE_SCALAR ? "scalar" : name, FormatPromFloat(p.value()));
      return;
    }
    std::printf("%s\n", name.c_str());
    for (const auto& p : points) {
      std::printf("  %s  %s\n", FormatTime(p.timestamp_ms()).c_str(), FormatPromFloat(p.value()).c_str());
    }
  }

  void End(const v1::QueryStats& stats, const google::protobuf::RepeatedPtrField<std::string>& warnings) {
    if (format_ == "json" && !done_) std::printf(type_ == v1::RESULT_TYPE_SCALAR ? "}\n" : "]}\n");
    if (format_ == "table") {
      size_t width = 0;
      for (const auto& [name, value] : rows_) width = std::max(width, name.size());
      width = std::min<size_t>(width, 120);
      for (const auto& [name, value] : rows_) {
        std::printf("%-*s  %s\n", static_cast<int>(width), name.c_str(), value.c_str());
      }
      std::fprintf(stderr, "%zu series, %zu points; read %llu series, %llu samples, %llu rollup windows in %.3f s\n",
                   series_, points_, static_cast<unsigned long long>(stats.series_selected()),
                   static_cast<unsigned long long>(stats.samples_read()),
                   static_cast<unsigned long long>(stats.windows_read()), stats.eval_seconds());
    }
    for (const auto& w : warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  }

 private:
  static const char* TypeWord(v1::ResultType t) {
    switch (t) {
      case v1::RESULT_TYPE_MATRIX:
        return "matrix";
      case v1::RESULT_TYPE_VECTOR:
        return "vector";
      case v1::RESULT_TYPE_SCALAR:
        return "scalar";
      case v1::RESULT_TYPE_STRING:
        return "string";
      default:
        return "unknown";
    }
  }

  std::string format_;
  v1::ResultType type_ = v1::RESULT_TYPE_UNSPECIFIED;
  bool done_ = false;
  size_t series_ = 0, points_ = 0;
  std::vector<std::pair<std::string, std::string>> rows_;
};

// The raw read of a bare selector: every sample, series by series.
int RawRead(const v1::QueryRequest& req, const std::string& format, const std::shared_ptr<grpc::Channel>& channel,
            grpc::ClientContext* context) {
  auto stub = v1::QueryService::NewStub(channel);
  auto reader = stub->Query(context, req);
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
        for (const auto& s : c.samples()) {
          std::printf("%s,%lld,%s\n", CsvQuote(name).c_str(), static_cast<long long>(s.timestamp_ms()),
                      FormatPromFloat(s.value()).c_str());
        }
      } else {
        JsonWriter w;
        w.BeginObject();
        w.Key("metric");
        w.BeginObject();
        for (const auto& l : c.labels()) {
          w.Key(l.name());
          w.String(l.value());
        }
        w.EndObject();
        w.Key("type");
        w.String(TypeName(c.type()));
        w.Key("samples");
        w.BeginArray();
        for (const auto& s : c.samples()) {
          w.BeginArray();
          w.Int(s.timestamp_ms());
          w.Double(s.value());
          w.EndArray();
        }
        w.EndArray();
        w.Key("last_chunk");
        w.Bool(c.last_chunk());
        w.EndObject();
        std::printf("%s\n", w.str().c_str());
      }
      continuing = !c.last_chunk();
    }
    std::fflush(stdout);  // show series as they stream in
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return Fail("query", status);
  if (format == "table") {
    std::fprintf(stderr, "%llu series, %llu samples\n", static_cast<unsigned long long>(series),
                 static_cast<unsigned long long>(samples));
  }
  return 0;
}

}  // namespace

int RunQuery(const QueryOptions& o, const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext* context) {
  auto parse = [](const char* flag, const std::string& text, int64_t* ms) {
    if (text.empty() || ParseTime(text, ms)) return true;
    std::fprintf(stderr, "sheafctl: --%s \"%s\" is not a time (RFC 3339 UTC, or Unix seconds or ms)\n", flag,
                 text.c_str());
    return false;
  };
  const int64_t now = WallClockMs();
  int64_t end = now, start = 0, time = now;
  if (!parse("end", o.end, &end) || !parse("time", o.time, &time)) return 2;
  start = end - o.since.count();
  if (!parse("start", o.start, &start)) return 2;
  if (!o.time.empty() && (o.step.count() > 0 || !o.start.empty() || !o.end.empty())) {
    std::fprintf(stderr, "sheafctl: --time is for instant queries; a range query takes --start/--end/--since\n");
    return 2;
  }

  v1::QueryRequest req;
  req.set_max_samples_per_chunk(o.chunk);
  // A bare selector without a step keeps its old meaning: every raw sample.
  if (o.step.count() == 0 && o.time.empty() && model::ParseSelector(o.expr).ok()) {
    req.set_selector(o.expr);
    req.set_start_ms(start);
    req.set_end_ms(end);
    return RawRead(req, o.format, channel, context);
  }
  req.set_expr(o.expr);
  if (o.step.count() > 0) {
    req.set_start_ms(start);
    req.set_end_ms(end);
    req.set_step_ms(o.step.count());
  } else {
    req.set_time_ms(time);
  }
  auto stub = v1::QueryService::NewStub(channel);
  auto reader = stub->Query(context, req);
  v1::QueryResponse resp;
  Printer printer(o.format);
  google::protobuf::RepeatedPtrField<v1::Label> labels;
  std::vector<v1::Sample> points;  // of the series being received
  bool first = true;
  v1::QueryStats stats;
  google::protobuf::RepeatedPtrField<std::string> warnings;
  while (reader->Read(&resp)) {
    if (first) {
      printer.Begin(resp.result_type(), resp.string_result(), time);
      first = false;
    }
    for (const v1::SeriesChunk& c : resp.chunks()) {
      if (points.empty()) labels = c.labels();
      points.insert(points.end(), c.samples().begin(), c.samples().end());
      if (c.last_chunk()) {
        printer.Series(labels, points);
        points.clear();
      }
    }
    if (resp.has_stats()) stats = resp.stats();
    warnings.MergeFrom(resp.warnings());
    std::fflush(stdout);
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    if (!first && o.format == "json") std::printf("\n");
    return Fail("query", status);
  }
  if (first) printer.Begin(v1::RESULT_TYPE_UNSPECIFIED, "", time);
  printer.End(stats, warnings);
  return 0;
}

}  // namespace sheaf::ctl
