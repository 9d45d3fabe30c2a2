// sheaf-loadgen: pushes a deterministic fleet (tools/fleet_generator.h) to
// sheafd over --streams parallel Push streams, the way agents do (gzip,
// per-stream series dictionary), and reports throughput. With --dry-run it
// sends nothing and reports the wire size: every batch serialized and
// gzip-compressed as the channel does it.
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>
#include <zlib.h>

#include <atomic>
#include <charconv>
#include <cstdio>
#include <thread>

#include "client/channel.h"
#include "common/clock.h"
#include "common/flags.h"
#include "proto/batch_encoder.h"
#include "sheaf/v1/ingest.grpc.pb.h"
#include "tools/fleet_generator.h"

namespace {

using namespace sheaf;

// gzip the way gRPC's message compression does (zlib, default level,
// gzip header).
size_t GzipSize(const std::string& in) {
  z_stream zs = {};
  deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 | 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  size_t n = zs.total_out;
  deflateEnd(&zs);
  return n;
}

struct StreamResult {
  uint64_t samples_sent = 0;
  uint64_t samples_acked = 0;
  uint64_t raw_bytes = 0;
  uint64_t gzip_bytes = 0;
  grpc::Status status;
};

// Point by point, as the load generator sends it; values in their shortest
// exact form so the other system stores exactly the same doubles.
int ExportFleet(tools::FleetGenerator& fleet, int points, const std::string& path) {
  FILE* out = std::fopen(path.c_str(), "w");
  if (out == nullptr) {
    std::fprintf(stderr, "sheaf-loadgen: cannot write %s\n", path.c_str());
    return 1;
  }
  std::vector<std::string> names;
  for (const auto& s : fleet.series()) {
    std::string name, labels;
    for (const auto& [n, v] : s.labels) {
      if (n == "__name__") {
        name = v;
        continue;
      }
      labels += (labels.empty() ? "" : ",") + n + "=\"" + v + "\"";
    }
    names.push_back(name + "{" + labels + "}");
  }
  uint64_t samples = 0;
  char value[64];
  for (int p = 0; p < points; ++p) {
    for (size_t i = 0; i < names.size(); ++i) {
      auto [end, ec] = std::to_chars(value, value + sizeof(value), fleet.Value(i, p));
      *end = '\0';
      std::fprintf(out, "%s %s %lld\n", names[i].c_str(), value, static_cast<long long>(fleet.TimestampMs(p)));
      ++samples;
    }
  }
  std::fclose(out);
  std::printf("samples %llu\n", static_cast<unsigned long long>(samples));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string addr = "127.0.0.1:7470", agent_prefix = "loadgen";
  int64_t hosts = 1000, series_per_host = 10, points = 360, batch = 2000, streams = 4, start_ms = 0;
  uint64_t seed = 1;
  std::chrono::milliseconds interval = std::chrono::seconds(10), timeout = std::chrono::minutes(30);
  bool gzip = true, dry_run = false;
  std::string export_path;
  FlagSet flags("sheaf-loadgen", "sheaf-loadgen [flags]");
  flags.String("addr", &addr, "sheafd's gRPC address");
  flags.Int("hosts", &hosts, "hosts in the fleet");
  flags.Int("series-per-host", &series_per_host, "series per host");
  flags.Int("points", &points, "points per series");
  flags.Duration("interval", &interval, "time between points");
  flags.Int("batch", &batch, "samples per batch");
  flags.Int("streams", &streams, "parallel Push streams (each an agent of its own)");
  flags.Uint("seed", &seed, "seed of the fleet's values");
  flags.Int("start-ms", &start_ms, "timestamp of the first point (default: so the last point is now)");
  flags.String("agent-prefix", &agent_prefix, "agent ids are PREFIX-0, PREFIX-1, ...");
  flags.Bool("gzip", &gzip, "compress with gzip");
  flags.Bool("dry-run", &dry_run, "send nothing; report bytes per sample on the wire");
  flags.String("export", &export_path,
               "send nothing; write the fleet to this file in Prometheus text format with timestamps "
               "(for importing the same data into another system, e.g. VictoriaMetrics' /api/v1/import/prometheus)");
  flags.Duration("timeout", &timeout, "deadline of each stream");
  client::SecurityFlags security;
  client::RegisterSecurityFlags(flags, &security);
  if (auto exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  if (hosts < 1 || series_per_host < 1 || points < 1 || batch < 1 || streams < 1 || streams > hosts) {
    std::fprintf(stderr,
                 "sheaf-loadgen: --hosts, --series-per-host, --points, --batch must be >= 1 and "
                 "1 <= --streams <= --hosts\n");
    return 2;
  }
  tools::FleetOptions fleet_options;
  fleet_options.hosts = static_cast<int>(hosts);
  fleet_options.series_per_host = static_cast<int>(series_per_host);
  fleet_options.points = static_cast<int>(points);
  fleet_options.interval_ms = interval.count();
  fleet_options.seed = seed;
  fleet_options.start_ms =
      start_ms != 0 ? start_ms
                    : (WallClockMs() / interval.count()) * interval.count() - (points - 1) * interval.count();
  // One generator for every stream: a stream reads only its own hosts'
  // series, and Value() moves only that series' cursor, so threads never
  // touch the same state. (A copy per stream cost 64 x 350 MB for a
  // million series.)
  tools::FleetGenerator fleet(fleet_options);
  std::vector<std::string> keys;
  std::vector<LabelPairs> labels;
  std::vector<v1::MetricType> types;
  for (const auto& s : fleet.series()) {
    labels.push_back(s.labels);
    keys.push_back(SeriesKey(s.labels));
    types.push_back(s.kind == tools::FleetMetricKind::kCounter ? v1::METRIC_TYPE_COUNTER : v1::METRIC_TYPE_GAUGE);
  }

  if (!export_path.empty()) return ExportFleet(fleet, static_cast<int>(points), export_path);

  std::shared_ptr<grpc::Channel> channel;
  if (!dry_run) {
    auto made = client::NewChannel(addr, security);
    if (!made.ok()) {
      std::fprintf(stderr, "sheaf-loadgen: %s\n", std::string(made.status().message()).c_str());
      return 2;
    }
    channel = *std::move(made);
  }
  const uint64_t seq_base = static_cast<uint64_t>(WallClockMs()) * 1000;
  std::vector<StreamResult> results(streams);
  auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int64_t si = 0; si < streams; ++si) {
    threads.emplace_back([&, si] {
      StreamResult& r = results[si];
      StreamEncoder encoder;
      v1::MetricBatch msg;
      std::vector<uint64_t> batch_samples;  // samples per sequence - seq_base
      grpc::ClientContext context;
      v1::PushAck ack;
      std::unique_ptr<v1::IngestService::Stub> stub;
      std::unique_ptr<grpc::ClientWriter<v1::MetricBatch>> writer;
      if (!dry_run) {
        if (gzip) context.set_compression_algorithm(GRPC_COMPRESS_GZIP);
        context.set_deadline(std::chrono::system_clock::now() + timeout);
        stub = v1::IngestService::NewStub(channel);
        writer = stub->Push(&context, &ack);
      }
      const std::string agent = agent_prefix + "-" + std::to_string(si);
      uint64_t seq = seq_base;
      int64_t in_batch = 0;
      bool failed = false;
      auto flush = [&] {
        if (in_batch == 0 || failed) return;
        r.samples_sent += in_batch;
        batch_samples.push_back(in_batch);
        if (dry_run) {
          std::string bytes = msg.SerializeAsString();
          r.raw_bytes += bytes.size();
          r.gzip_bytes += GzipSize(bytes);
        } else if (!writer->Write(msg)) {
          failed = true;
        }
        in_batch = 0;
      };
      for (int p = 0; p < points && !failed; ++p) {
        int64_t ts = fleet.TimestampMs(p);
        for (int64_t h = si; h < hosts && !failed; h += streams) {
          for (int64_t k = 0; k < series_per_host; ++k) {
            size_t idx = static_cast<size_t>(h * series_per_host + k);
            if (in_batch == 0) encoder.BeginBatch(agent, ++seq, &msg);
            double v = fleet.Value(idx, p);
            encoder.Add(keys[idx], labels[idx], types[idx], &ts, &v, 1);
            if (++in_batch == batch) flush();
          }
        }
      }
      flush();
      if (dry_run) return;
      if (!failed) writer->WritesDone();
      r.status = writer->Finish();
      if (r.status.ok()) {
        for (size_t i = 0; i < batch_samples.size(); ++i) {
          if (seq_base + 1 + i <= ack.durable_sequence()) r.samples_acked += batch_samples[i];
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  StreamResult total;
  int failures = 0;
  for (const auto& r : results) {
    total.samples_sent += r.samples_sent;
    total.samples_acked += r.samples_acked;
    total.raw_bytes += r.raw_bytes;
    total.gzip_bytes += r.gzip_bytes;
    if (!dry_run && !r.status.ok()) {
      ++failures;
      std::fprintf(stderr, "sheaf-loadgen: a stream failed: code %d: %s\n", static_cast<int>(r.status.error_code()),
                   r.status.error_message().c_str());
    }
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  if (dry_run) {
    std::printf(
        "samples %llu\nbatches_bytes_raw %llu\nbatches_bytes_gzip %llu\nbytes_per_sample_raw %.3f\n"
        "bytes_per_sample_gzip %.3f\n",
        static_cast<unsigned long long>(total.samples_sent), static_cast<unsigned long long>(total.raw_bytes),
        static_cast<unsigned long long>(total.gzip_bytes),
        static_cast<double>(total.raw_bytes) / static_cast<double>(total.samples_sent),
        static_cast<double>(total.gzip_bytes) / static_cast<double>(total.samples_sent));
    return 0;
  }
  std::printf(
      "samples_sent %llu\nsamples_acked %llu\nwall_seconds %.3f\nsamples_per_second %.0f\n"
      "loadgen_cpu_seconds %.2f\nstreams_failed %d\n",
      static_cast<unsigned long long>(total.samples_sent), static_cast<unsigned long long>(total.samples_acked),
      seconds, static_cast<double>(total.samples_acked) / seconds, cpu, failures);
  return failures == 0 && total.samples_acked == total.samples_sent ? 0 : 1;
}
