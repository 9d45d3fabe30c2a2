#include "tools/sheafctl_import.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <unordered_map>

#include "common/clock.h"
#include "common/duration.h"
#include "common/flags.h"
#include "model/exposition_parser.h"
#include "model/labels.h"
#include "model/validation.h"
#include "proto/batch_encoder.h"
#include "sheaf/v1/ingest.grpc.pb.h"
#include "tools/ctl_util.h"

namespace sheaf::ctl {
namespace {

constexpr size_t kReadBytes = 1 << 20;
constexpr size_t kDetectBytes = 64 << 10;  // what format detection looks at
// sheafd takes at most 100,000 samples of one series per batch and 16 MiB
// per message (after decompression).
constexpr uint64_t kMaxBatchSize = 100'000;
constexpr size_t kMaxBatchBytes = 4 << 20;
// A stream's series dictionary, counted as sheafd counts it, stays well
// below its limits (64 MiB and 1,000,000 refs per stream): past these the
// import goes on in a new stream (with a new dictionary).
constexpr size_t kMaxStreamDictionaryBytes = 32 << 20;
constexpr size_t kMaxStreamSeries = 500'000;
// A stream's batches are acknowledged when it ends, so streams are short:
// the summary's counts come in as the import goes, and a failure leaves
// little unconfirmed.
constexpr auto kMaxStreamAge = std::chrono::seconds(30);
constexpr uint64_t kMaxErrorsShown = 10;

// What one dictionary entry costs sheafd (daemon/ingest_service.cc).
size_t DictionaryCost(const LabelPairs& labels) {
  size_t bytes = 160;
  for (const auto& [name, value] : labels) bytes += name.size() + value.size() + 64;
  return bytes;
}

std::string Count(double v) {
  if (v >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e4) return fmt::format("{:.1f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}

std::string Bytes(double v) {
  if (v >= 1 << 30) return fmt::format("{:.2f} GiB", v / (1 << 30));
  if (v >= 1 << 20) return fmt::format("{:.1f} MiB", v / (1 << 20));
  if (v >= 1 << 10) return fmt::format("{:.1f} KiB", v / (1 << 10));
  return fmt::format("{:.0f} B", v);
}

// "import-<file name>-<8 hex digits>": a new identity for every run unless
// --import-id names one, so a second run of a file imports it again
// (under the same id it would only resume).
std::string DefaultImportId(const std::string& path) {
  std::string base = path == "-" ? "stdin" : path.substr(path.find_last_of('/') + 1);
  if (base.size() > 100) base.resize(100);
  for (char& c : base) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '_';
  }
  std::random_device rd;
  return fmt::format("import-{}-{:08x}", base, rd());
}

// The samples of one batch, grouped by series (one SeriesSamples each on
// the wire, however the file orders its lines).
class BatchAssembler {
 public:
  void Add(const model::Labels& labels, v1::MetricType type, int64_t timestamp_ms, double value) {
    pairs_.resize(labels.size());
    for (size_t i = 0; i < labels.size(); ++i) {
      pairs_[i].first.assign(labels[i].name);
      pairs_[i].second.assign(labels[i].value);
    }
    auto [it, inserted] = index_.try_emplace(SeriesKey(pairs_), used_);
    if (inserted) {
      if (used_ == series_.size()) series_.emplace_back();
      Series& s = series_[used_++];
      s.key = it->first;
      s.labels = pairs_;
      s.type = type;
      s.timestamps_ms.clear();
      s.values.clear();
      bytes_ += s.key.size() + 16;
    }
    Series& s = series_[it->second];
    s.timestamps_ms.push_back(timestamp_ms);
    s.values.push_back(value);
    ++samples_;
    bytes_ += 20;
  }

  size_t samples() const { return samples_; }
  size_t bytes() const { return bytes_; }  // an estimate of the encoded batch

  // Adds the batch's series to the batch `encoder` began and empties the
  // assembler (keeping its memory). Returns the dictionary cost of the
  // series the stream had not defined before.
  size_t EncodeInto(StreamEncoder& encoder) {
    size_t new_cost = 0;
    for (size_t i = 0; i < used_; ++i) {
      const Series& s = series_[i];
      const size_t defined = encoder.dictionary_size();
      encoder.Add(s.key, s.labels, s.type, s.timestamps_ms.data(), s.values.data(), s.values.size());
      if (encoder.dictionary_size() > defined) new_cost += DictionaryCost(s.labels);
    }
    index_.clear();
    used_ = samples_ = bytes_ = 0;
    return new_cost;
  }

 private:
  struct Series {
    std::string key;
    LabelPairs labels;
    v1::MetricType type = v1::METRIC_TYPE_UNSPECIFIED;
    std::vector<int64_t> timestamps_ms;
    std::vector<double> values;
  };
  std::unordered_map<std::string, size_t> index_;  // key -> series_[i]
  std::vector<Series> series_;                     // [0, used_) hold this batch
  size_t used_ = 0;
  size_t samples_ = 0;
  size_t bytes_ = 0;
  LabelPairs pairs_;
};

struct ReasonCount {
  uint64_t samples = 0;
  std::string example;
};

struct ImportConfig {
  std::string source;  // the file name, or "-"
  int fd = -1;
  int64_t total_bytes = -1;  // -1: unknown (a pipe)
  model::ExpositionFormat format = model::ExpositionFormat::kPrometheusText;
  std::string import_id;
  ImportFlags flags;
  std::chrono::milliseconds timeout{0};
  bool show_progress = false;
  bool terminal = false;  // stderr is a terminal: the progress line redraws itself
};

class Importer {
 public:
  Importer(std::shared_ptr<grpc::Channel> channel, ImportConfig config)
      : stub_(v1::IngestService::NewStub(channel)),
        config_(std::move(config)),
        parser_(config_.format),
        start_ms_(WallClockMs()),
        started_(std::chrono::steady_clock::now()) {}

  // `head`: bytes already read from the input (for format detection).
  int Run(std::string_view head) {
    std::fprintf(stderr, "sheafctl: importing %s (%s%s) under --import-id %s\n",
                 config_.source == "-" ? "standard input" : config_.source.c_str(),
                 std::string(model::ExpositionFormatName(config_.format)).c_str(),
                 config_.flags.backfill ? ", backfill" : "", config_.import_id.c_str());
    bytes_read_ = head.size();
    parser_.Feed(head);
    bool ok = Drain();
    std::string chunk(kReadBytes, '\0');
    while (ok) {
      const ssize_t n = read(config_.fd, chunk.data(), chunk.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        read_error_ = std::strerror(errno);
        ok = false;
        break;
      }
      if (n == 0) break;
      bytes_read_ += static_cast<uint64_t>(n);
      parser_.Feed(std::string_view(chunk.data(), static_cast<size_t>(n)));
      ok = Drain();
      Progress(false);
    }
    if (ok) {
      parser_.Close();
      ok = Drain();
    }
    if (ok && assembler_.samples() > 0) ok = SendBatch();
    if (ok && stream_ != nullptr) ok = FinishStream();
    Progress(true);
    return Report(ok);
  }

 private:
  struct Stream {
    grpc::ClientContext context;
    v1::PushAck ack;
    std::unique_ptr<grpc::ClientWriter<v1::MetricBatch>> writer;
    std::vector<uint64_t> batch_samples;  // samples of each batch written, in order
    std::chrono::steady_clock::time_point started;
    size_t dictionary_bytes = 0;
  };

  // Parses what was fed; false once the stream failed.
  bool Drain() {
    for (;;) {
      auto next = parser_.Next(&sample_);
      if (!next.ok()) {
        if (++parse_errors_ <= kMaxErrorsShown) {
          std::fprintf(stderr, "%ssheafctl: %s: %s\n", ClearLine(), config_.source.c_str(),
                       std::string(next.status().message()).c_str());
          if (parse_errors_ == kMaxErrorsShown) {
            std::fprintf(stderr, "sheafctl: (further lines that cannot be parsed are counted, not shown)\n");
          }
        }
        continue;
      }
      if (!*next) return true;
      if (!Add(sample_)) return false;
    }
  }

  bool Add(const model::ExpositionSample& s) {
    ++samples_read_;
    if (s.created) {  // a creation time, not a value of the series
      ++created_skipped_;
      return true;
    }
    if (!s.timestamp_ms) ++without_timestamp_;
    auto type = static_cast<v1::MetricType>(s.type);  // the numbers are the same (model/types.h)
    // No # TYPE: Prometheus' naming convention makes `..._total` a counter
    // (sheaf-loadgen --export and VictoriaMetrics exports carry no types).
    if (type == v1::METRIC_TYPE_UNSPECIFIED && s.name().ends_with("_total")) type = v1::METRIC_TYPE_COUNTER;
    assembler_.Add(s.labels, type, s.timestamp_ms.value_or(start_ms_), s.value);
    if (assembler_.samples() >= config_.flags.batch_size || assembler_.bytes() >= kMaxBatchBytes) {
      return SendBatch();
    }
    return true;
  }

  bool SendBatch() {
    if (stream_ != nullptr &&
        (std::chrono::steady_clock::now() - stream_->started >= kMaxStreamAge ||
         stream_->dictionary_bytes >= kMaxStreamDictionaryBytes || encoder_.dictionary_size() >= kMaxStreamSeries)) {
      if (!FinishStream()) return false;
    }
    if (stream_ == nullptr) StartStream();
    const uint64_t samples = assembler_.samples();
    encoder_.BeginBatch(config_.import_id, ++sequence_, &batch_);
    batch_.set_backfill(config_.flags.backfill);
    stream_->dictionary_bytes += assembler_.EncodeInto(encoder_);
    if (!stream_->writer->Write(batch_)) {  // the call failed: Finish says why
      if (FinishStream()) status_ = grpc::Status(grpc::StatusCode::UNKNOWN, "the Push stream ended early");
      return false;
    }
    stream_->batch_samples.push_back(samples);
    ++batches_sent_;
    samples_sent_ += samples;
    return true;
  }

  void StartStream() {
    stream_ = std::make_unique<Stream>();
    stream_->started = std::chrono::steady_clock::now();
    stream_->context.set_compression_algorithm(GRPC_COMPRESS_GZIP);
    stream_->context.set_deadline(std::chrono::system_clock::now() + kMaxStreamAge + config_.timeout);
    stream_->writer = stub_->Push(&stream_->context, &stream_->ack);
    encoder_.Reset();  // the daemon's dictionary is per stream
  }

  // Ends the stream and takes its acknowledgement into the totals. False
  // (and status_ set) if the stream failed.
  bool FinishStream() {
    std::unique_ptr<Stream> s = std::move(stream_);
    s->writer->WritesDone();
    status_ = s->writer->Finish();
    if (!status_.ok()) return false;
    const v1::PushAck& ack = s->ack;
    uint64_t sent = 0;
    for (uint64_t n : s->batch_samples) sent += n;
    confirmed_sent_ += sent;
    batches_applied_ += ack.batches_applied();
    batches_duplicate_ += ack.batches_duplicate();
    samples_stored_ += ack.samples_stored();
    // This import's sequences only increase, so the batches sheafd already
    // had (an earlier run under the same id) are the stream's first ones.
    for (uint64_t i = 0; i < ack.batches_duplicate() && i < s->batch_samples.size(); ++i) {
      samples_duplicate_ += s->batch_samples[i];
    }
    for (const v1::RejectCount& r : ack.rejected()) {
      ReasonCount& c = rejected_[static_cast<int>(r.reason())];
      c.samples += r.samples();
      samples_rejected_ += r.samples();
      if (c.example.empty()) c.example = r.example();
    }
    return true;
  }

  const char* ClearLine() const { return config_.show_progress && config_.terminal ? "\r\033[K" : ""; }

  // At most once a second, on stderr: samples/s, bytes read, ETA.
  void Progress(bool final) {
    if (!config_.show_progress) return;
    const auto now = std::chrono::steady_clock::now();
    if (final) {
      if (config_.terminal) std::fputs(ClearLine(), stderr);
      return;
    }
    if (now - last_progress_ < std::chrono::seconds(1)) return;
    last_progress_ = now;
    const double seconds = std::chrono::duration<double>(now - started_).count();
    std::string line = fmt::format("sheafctl: {} samples sent ({}/s), {} read", Count(samples_sent_),
                                   Count(samples_sent_ / std::max(seconds, 1e-3)), Bytes(bytes_read_));
    if (config_.total_bytes > 0) {
      const double fraction = static_cast<double>(bytes_read_) / static_cast<double>(config_.total_bytes);
      line += fmt::format(" of {} ({:.0f}%)", Bytes(config_.total_bytes), 100 * fraction);
      if (fraction > 0 && fraction < 1) {
        const auto eta = std::chrono::milliseconds(static_cast<int64_t>(seconds * (1 - fraction) / fraction) * 1000);
        line += ", ETA " + FormatDuration(eta);
      }
    }
    if (parse_errors_ > 0) line += fmt::format(", {} bad lines", parse_errors_);
    std::fprintf(stderr, "%s%s%s", ClearLine(), line.c_str(), config_.terminal ? "" : "\n");
    std::fflush(stderr);
  }

  int Report(bool ok) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    const uint64_t not_new =
        confirmed_sent_ - std::min(confirmed_sent_, samples_stored_ + samples_rejected_ + samples_duplicate_);
    auto row = [](const char* name, const std::string& value) { std::printf("%-26s%s\n", name, value.c_str()); };
    auto num = [](uint64_t v) { return std::to_string(v); };
    row("import_id", config_.import_id);
    row("format", std::string(model::ExpositionFormatName(config_.format)));
    row("backfill", config_.flags.backfill ? "yes" : "no");
    row("bytes_read", num(bytes_read_));
    row("lines", num(static_cast<uint64_t>(parser_.lines())));
    row("parse_errors", num(parse_errors_));
    row("samples_read", num(samples_read_));
    row("created_skipped", num(created_skipped_));
    row("without_timestamp", num(without_timestamp_));
    row("samples_sent", num(samples_sent_));
    row("samples_stored", num(samples_stored_));
    row("samples_duplicate", num(samples_duplicate_));
    row("samples_not_new", num(not_new));
    row("samples_rejected", num(samples_rejected_));
    for (const auto& [reason, c] : rejected_) {
      std::printf("  %-24s%llu, e.g. %s\n",
                  std::string(model::ReasonName(static_cast<model::RejectReason>(reason))).c_str(),
                  static_cast<unsigned long long>(c.samples), c.example.c_str());
    }
    row("samples_unconfirmed", num(ok ? 0 : samples_sent_ - confirmed_sent_));
    row("batches_sent", num(batches_sent_));
    row("batches_applied", num(batches_applied_));
    row("batches_duplicate", num(batches_duplicate_));
    row("seconds", fmt::format("{:.3f}", seconds));
    row("samples_per_second", fmt::format("{:.0f}", static_cast<double>(samples_sent_) / std::max(seconds, 1e-3)));
    std::fflush(stdout);

    if (batches_duplicate_ > 0) {
      std::fprintf(stderr,
                   "sheafctl: %llu batches were already stored under --import-id %s (an earlier run): skipped, "
                   "not stored twice\n",
                   static_cast<unsigned long long>(batches_duplicate_), config_.import_id.c_str());
    }
    auto window = rejected_.find(static_cast<int>(model::RejectReason::kTimestampOutOfWindow));
    if (window != rejected_.end() && !config_.flags.backfill) {
      std::fprintf(stderr,
                   "sheafctl: %llu samples are outside sheafd's live window (--accept-past, 7d by default). To "
                   "import history on purpose, run again with --backfill, without --import-id or with a new one "
                   "(this run's batches count as imported under %s)\n",
                   static_cast<unsigned long long>(window->second.samples), config_.import_id.c_str());
    }
    if (!ok) {
      if (!read_error_.empty()) {
        std::fprintf(stderr, "sheafctl: reading %s failed after %llu bytes: %s\n", config_.source.c_str(),
                     static_cast<unsigned long long>(bytes_read_), read_error_.c_str());
      } else {
        Fail("import", status_);  // "sheafctl: import failed: CODE: message"
      }
      std::fprintf(stderr,
                   "sheafctl: the import is incomplete (%llu samples confirmed stored). Run the same command with "
                   "--import-id %s to resume: batches sheafd already has are skipped\n",
                   static_cast<unsigned long long>(samples_stored_), config_.import_id.c_str());
      return 1;
    }
    return samples_rejected_ > 0 || parse_errors_ > 0 ? 3 : 0;
  }

  std::unique_ptr<v1::IngestService::Stub> stub_;
  const ImportConfig config_;
  model::ExpositionParser parser_;
  model::ExpositionSample sample_;
  BatchAssembler assembler_;
  StreamEncoder encoder_;
  v1::MetricBatch batch_;
  std::unique_ptr<Stream> stream_;
  const int64_t start_ms_;  // the timestamp of samples written without one
  const std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_progress_ = started_;

  uint64_t sequence_ = 0;      // batches sent: sequences 1, 2, 3, ... in file order
  uint64_t batches_sent_ = 0;  // written to a stream (sequence_ counts one more after a failed write)
  uint64_t bytes_read_ = 0;
  uint64_t parse_errors_ = 0;
  uint64_t samples_read_ = 0;
  uint64_t created_skipped_ = 0;
  uint64_t without_timestamp_ = 0;
  uint64_t samples_sent_ = 0;
  uint64_t confirmed_sent_ = 0;  // sent in streams that were acknowledged
  uint64_t samples_stored_ = 0;
  uint64_t samples_duplicate_ = 0;
  uint64_t samples_rejected_ = 0;
  uint64_t batches_applied_ = 0;
  uint64_t batches_duplicate_ = 0;
  std::map<int, ReasonCount> rejected_;  // by model::RejectReason
  grpc::Status status_;
  std::string read_error_;
};

}  // namespace

void RegisterImportFlags(FlagSet& flags, ImportFlags* out) {
  flags.Bool("backfill", &out->backfill,
             "import: store history older than sheafd's --accept-past window (back to its longest retention)");
  flags.Uint("batch-size", &out->batch_size, "import: samples per batch (at most 100000)");
  flags.String("import-id", &out->import_id,
               "import: the import's identity; the same id again skips what was stored (default: "
               "import-FILE-RANDOM)");
  flags.Bool("progress", &out->progress, "import: a progress line on stderr even when it is not a terminal");
}

int RunImport(const std::vector<std::string>& args, const std::shared_ptr<grpc::Channel>& channel,
              const std::string& format,
              std::chrono::milliseconds timeout, const ImportFlags& flags) {
  if (args.size() != 2) {
    std::fprintf(stderr,
                 "sheafctl: usage: sheafctl import FILE|- [--format auto|prometheus|openmetrics] [--backfill] "
                 "[--batch-size N] [--import-id ID] [--progress]\n");
    return 2;
  }
  std::optional<model::ExpositionFormat> forced;
  if (format == "prometheus") {
    forced = model::ExpositionFormat::kPrometheusText;
  } else if (format == "openmetrics") {
    forced = model::ExpositionFormat::kOpenMetrics;
  } else if (format != "auto" && format != "table") {
    std::fprintf(stderr, "sheafctl: import: --format must be auto, prometheus or openmetrics\n");
    return 2;
  }
  if (flags.batch_size < 1 || flags.batch_size > kMaxBatchSize) {
    std::fprintf(stderr, "sheafctl: import: --batch-size must be 1 to %llu\n",
                 static_cast<unsigned long long>(kMaxBatchSize));
    return 2;
  }
  ImportConfig config;
  config.source = args[1];
  config.flags = flags;
  config.timeout = timeout;
  config.import_id = flags.import_id.empty() ? DefaultImportId(config.source) : flags.import_id;
  if (config.import_id.size() > 256 || !model::IsValidUtf8(config.import_id)) {
    std::fprintf(stderr, "sheafctl: import: --import-id must be 1 to 256 bytes of UTF-8\n");
    return 2;
  }
  config.fd = config.source == "-" ? STDIN_FILENO : open(config.source.c_str(), O_RDONLY | O_CLOEXEC);
  if (config.fd < 0) {
    std::fprintf(stderr, "sheafctl: import: cannot open %s: %s\n", config.source.c_str(), std::strerror(errno));
    return 2;
  }
  struct stat st;
  if (fstat(config.fd, &st) == 0 && S_ISREG(st.st_mode)) config.total_bytes = st.st_size;
  config.terminal = isatty(STDERR_FILENO) == 1;
  config.show_progress = flags.progress || config.terminal;

  // The first bytes decide the format unless --format names it.
  std::string head(kDetectBytes, '\0');
  size_t have = 0;
  while (have < head.size()) {
    const ssize_t n = read(config.fd, head.data() + have, head.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::fprintf(stderr, "sheafctl: import: cannot read %s: %s\n", config.source.c_str(), std::strerror(errno));
      return 2;
    }
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  head.resize(have);
  config.format = forced ? *forced : model::DetectExpositionFormat(head);

  const int fd = config.fd;
  Importer importer(channel, std::move(config));
  const int exit_code = importer.Run(head);
  if (fd != STDIN_FILENO) close(fd);
  return exit_code;
}

}  // namespace sheaf::ctl
