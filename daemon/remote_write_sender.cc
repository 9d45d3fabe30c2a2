#include "daemon/remote_write_sender.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <snappy.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <sstream>

#include "common/clock.h"
#include "common/coding.h"
#include "common/duration.h"
#include "common/log.h"
#include "prometheus/remote.pb.h"
#include "promql/parser.h"
#include "sheaf_version.h"
#include "spool/spool.h"

namespace sheaf::daemon {
namespace {

// A queued request (a spool record's payload), integers big-endian:
//   fixed64  samples in the request
//   fixed64  when sheafd accepted its oldest sample (ms since the epoch)
//   bytes    the HTTP body: a snappy block of a prompb::WriteRequest
constexpr size_t kRecordHeaderBytes = 16;

// Estimated encoded bytes of one sample (value, timestamp, tags) and of a
// series' overhead besides its label bytes, to bound a request's size
// before it is encoded.
constexpr size_t kSampleBytes = 24;
constexpr size_t kSeriesOverheadBytes = 16;
constexpr size_t kLabelOverheadBytes = 8;

// Drop reasons (the `reason` label), created at zero so rate() works.
constexpr const char* kDropReasons[] = {"buffer_full", "queue_full", "queue_too_old",
                                        "queue_corrupt", "rejected", "too_large"};

// Series whose labels the fanout keeps, and series ids answered densely.
constexpr size_t kMaxCachedLabelBytes = 64ull << 20;
constexpr storage::SeriesId kMaxDenseId = 1ull << 27;

size_t LabelBytes(const model::Labels& labels) {
  size_t n = kSeriesOverheadBytes;
  for (const model::Label& l : labels) n += l.name.size() + l.value.size() + kLabelOverheadBytes;
  return n;
}

// The headers a user may not set: the protocol's own, and Authorization
// (bearer_token_file / basic_auth set it).
bool ReservedHeader(std::string_view name) {
  static const char* const kReserved[] = {"content-encoding", "content-type", "content-length",
                                          "x-prometheus-remote-write-version", "user-agent", "authorization",
                                          "host", "expect", "transfer-encoding", "connection"};
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return std::find(std::begin(kReserved), std::end(kReserved), lower) != std::end(kReserved);
}

bool HeaderToken(std::string_view name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
  });
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path, const std::string& key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(fmt::format("{} {}: cannot read the file", key, path));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  if (text.empty()) return absl::FailedPreconditionError(fmt::format("{} {}: the file is empty", key, path));
  return text;
}

// "http://127.0.0.1:8428/api/v1/write" -> "127.0.0.1:8428_api_v1_write".
std::string NameFromUrl(std::string_view url) {
  if (auto p = url.find("://"); p != std::string_view::npos) url.remove_prefix(p + 3);
  std::string out;
  for (char c : url) out += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == ':' || c == '-' ? c : '_';
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out.substr(0, 128);
}

bool ValidName(std::string_view name) {
  return !name.empty() && name.size() <= 128 && name != "." && name != ".." &&
         std::all_of(name.begin(), name.end(), [](unsigned char c) {
           return std::isalnum(c) || c == '_' || c == '.' || c == ':' || c == '-';
         });
}

// A spool segment: an eighth of the bound (the spool removes whole
// segments), between 4 KiB and 8 MiB.
uint64_t SegmentBytes(uint64_t queue_max_bytes) {
  return std::clamp<uint64_t>(queue_max_bytes / 8, 4096, 8ull << 20);
}

// The largest request (before compression) whose record fits a segment.
size_t RequestBytesLimit(const RemoteWriteConfig& c) {
  const uint64_t room = SegmentBytes(c.queue_max_bytes) - spool::Spool::kSegmentHeaderBytes -
                        spool::Spool::kRecordHeaderBytes - kRecordHeaderBytes - 64;
  // snappy::MaxCompressedLength(n) = 32 + n + n / 6.
  return std::min<size_t>(c.max_request_bytes, static_cast<size_t>((room - 32) * 6 / 7));
}

// Retry-After: delay-seconds or an HTTP date; 0 when absent or unreadable.
std::chrono::milliseconds ParseRetryAfter(const std::string& value, int64_t now_ms) {
  if (value.empty()) return std::chrono::milliseconds(0);
  int64_t seconds = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec == std::errc() && end == value.data() + value.size()) {
    seconds = std::clamp<int64_t>(seconds, 0, std::chrono::duration_cast<std::chrono::seconds>(kMaxRetryAfter).count());
    return std::chrono::seconds(seconds);
  }
  const time_t at = curl_getdate(value.c_str(), nullptr);
  if (at < 0) return std::chrono::milliseconds(0);
  const int64_t wait = static_cast<int64_t>(at) * 1000 - now_ms;
  return std::chrono::milliseconds(std::clamp<int64_t>(wait, 0, kMaxRetryAfter / std::chrono::milliseconds(1)));
}

}  // namespace

absl::Status ValidateRemoteWriteConfig(RemoteWriteConfig* c, const std::string& data_dir, const std::string& where) {
  auto bad = [&](std::string_view key, const std::string& value, std::string_view why) {
    return absl::InvalidArgumentError(fmt::format("{}: {}: {} {}", where, key, value, why));
  };
  if (c->url.empty()) return absl::InvalidArgumentError(fmt::format("{}: url is required", where));
  {
    std::unique_ptr<CURLU, void (*)(CURLU*)> u(curl_url(), curl_url_cleanup);
    char* scheme = nullptr;
    char* host = nullptr;
    const bool parsed = curl_url_set(u.get(), CURLUPART_URL, c->url.c_str(), 0) == CURLUE_OK &&
                        curl_url_get(u.get(), CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
                        curl_url_get(u.get(), CURLUPART_HOST, &host, 0) == CURLUE_OK;
    const std::string s = scheme != nullptr ? scheme : "";
    curl_free(scheme);
    curl_free(host);
    if (!parsed || (s != "http" && s != "https")) {
      return bad("url", c->url, "is not an http:// or https:// URL (e.g. http://127.0.0.1:8428/api/v1/write)");
    }
  }
  if (c->name.empty()) c->name = NameFromUrl(c->url);
  if (!ValidName(c->name)) {
    return bad("name", fmt::format("\"{}\"", c->name), "must be 1-128 letters, digits, '_', '.', ':' or '-'");
  }
  if (c->match.empty()) return bad("match", "[]", "selects nothing: give at least one series selector");
  for (const std::string& m : c->match) {
    if (auto parsed = promql::ParseMetricSelector(m); !parsed.ok()) {
      return bad("match", fmt::format("\"{}\"", m), fmt::format("is not a series selector: {}", std::string(parsed.status().message())));
    }
  }
  if (!storage::ValidTenantName(c->tenant)) {
    return bad("tenant", fmt::format("\"{}\"", c->tenant), "is not a tenant name: use 1 to 64 of A-Z a-z 0-9 _ . -");
  }
  if (c->queue_dir.empty()) c->queue_dir = data_dir + "/remote_write/" + c->name;
  if (c->queue_max_bytes < (64u << 10)) return bad("queue_max_bytes", std::to_string(c->queue_max_bytes), "is below 65536");
  auto positive = [&](std::string_view key, std::chrono::milliseconds d) -> absl::Status {
    if (d.count() <= 0) return bad(key, FormatDuration(d), "must be > 0");
    return absl::OkStatus();
  };
  for (auto [key, d] : {std::pair<const char*, std::chrono::milliseconds>{"queue_max_age", c->queue_max_age},
                        {"batch_send_deadline", c->batch_send_deadline},
                        {"remote_timeout", c->remote_timeout},
                        {"min_backoff", c->min_backoff},
                        {"max_backoff", c->max_backoff}}) {
    if (auto s = positive(key, d); !s.ok()) return s;
  }
  if (c->min_backoff > c->max_backoff) {
    return bad("min_backoff", FormatDuration(c->min_backoff),
               fmt::format("is above max_backoff {}", FormatDuration(c->max_backoff)));
  }
  if (c->max_samples_per_send < 1 || c->max_samples_per_send > 1'000'000) {
    return bad("max_samples_per_send", std::to_string(c->max_samples_per_send), "must be 1 to 1000000");
  }
  if (c->buffer_max_samples < c->max_samples_per_send || c->buffer_max_samples > 100'000'000) {
    return bad("buffer_max_samples", std::to_string(c->buffer_max_samples),
               fmt::format("must be from max_samples_per_send ({}) to 100000000", c->max_samples_per_send));
  }
  for (const auto& [name, value] : c->headers) {
    if (!HeaderToken(name)) return bad("headers", fmt::format("\"{}\"", name), "is not an HTTP header name");
    if (ReservedHeader(name)) {
      return bad("headers", name,
                 "is set by sheafd itself (use bearer_token_file or basic_auth for Authorization)");
    }
    if (value.find_first_of("\r\n") != std::string::npos) {
      return bad("headers", name, "has a value with a line break");
    }
  }
  if (!c->bearer_token_file.empty() && (!c->basic_auth_username.empty() || !c->basic_auth_password_file.empty())) {
    return absl::InvalidArgumentError(fmt::format("{}: bearer_token_file and basic_auth: give one of them", where));
  }
  if (!c->bearer_token_file.empty()) {
    if (auto t = ReadSecretFile(c->bearer_token_file, "bearer_token_file"); !t.ok()) {
      return absl::InvalidArgumentError(fmt::format("{}: {}", where, std::string(t.status().message())));
    }
  }
  if (!c->basic_auth_username.empty() || !c->basic_auth_password_file.empty()) {
    if (c->basic_auth_username.empty() || c->basic_auth_password_file.empty()) {
      return absl::InvalidArgumentError(
          fmt::format("{}: basic_auth needs both username and password_file", where));
    }
    if (auto t = ReadSecretFile(c->basic_auth_password_file, "basic_auth.password_file"); !t.ok()) {
      return absl::InvalidArgumentError(fmt::format("{}: {}", where, std::string(t.status().message())));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RemoteWriteConfig>> LoadRemoteWriteConfig(const std::string& path,
                                                                     const std::string& data_dir) {
  std::vector<RemoteWriteConfig> out;
  if (path.empty()) return out;
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("config file {}: {}", path, e.what()));
  }
  if (!root.IsMap() || !root["remote_write"] || root["remote_write"].IsNull()) return out;
  const YAML::Node list = root["remote_write"];
  if (!list.IsSequence()) {
    return absl::InvalidArgumentError(
        fmt::format("config file {}: remote_write: expected a list of remotes (\"- url: http://...\")", path));
  }
  std::set<std::string> names, dirs;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = fmt::format("config file {}: remote_write[{}]", path, i);
    const YAML::Node entry = list[i];
    if (!entry.IsMap()) return absl::InvalidArgumentError(where + ": expected a mapping (url: ..., match: ...)");
    RemoteWriteConfig c;
    try {
      for (const auto& kv : entry) {
        const std::string key = kv.first.as<std::string>();
        const YAML::Node& v = kv.second;
        auto scalar = [&]() -> absl::StatusOr<std::string> {
          if (!v.IsScalar()) return absl::InvalidArgumentError(fmt::format("{}: {}: expected one value", where, key));
          return v.as<std::string>();
        };
        auto duration = [&](std::chrono::milliseconds* target) -> absl::Status {
          auto text = scalar();
          if (!text.ok()) return text.status();
          auto d = ParseDuration(*text);
          if (!d.ok()) {
            return absl::InvalidArgumentError(
                fmt::format("{}: {}: \"{}\" is not a duration (e.g. 30ms, 5s, 1m)", where, key, *text));
          }
          *target = *d;
          return absl::OkStatus();
        };
        auto number = [&](uint64_t* target) -> absl::Status {
          auto text = scalar();
          if (!text.ok()) return text.status();
          auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), *target);
          if (ec != std::errc() || end != text->data() + text->size()) {
            return absl::InvalidArgumentError(
                fmt::format("{}: {}: \"{}\" is not a whole number", where, key, *text));
          }
          return absl::OkStatus();
        };
        absl::Status s;
        if (key == "url" || key == "name" || key == "queue_dir" || key == "bearer_token_file" || key == "tenant") {
          auto text = scalar();
          if (!text.ok()) return text.status();
          (key == "url"                ? c.url
           : key == "name"             ? c.name
           : key == "queue_dir"        ? c.queue_dir
           : key == "bearer_token_file" ? c.bearer_token_file
                                        : c.tenant) = *text;
        } else if (key == "match") {
          c.match.clear();
          if (v.IsSequence()) {
            for (const auto& m : v) c.match.push_back(m.as<std::string>());
          } else {
            auto text = scalar();
            if (!text.ok()) return text.status();
            c.match.push_back(*text);
          }
        } else if (key == "queue_max_bytes") {
          s = number(&c.queue_max_bytes);
        } else if (key == "buffer_max_samples") {
          uint64_t n = 0;
          s = number(&n);
          c.buffer_max_samples = static_cast<size_t>(n);
        } else if (key == "queue_sync") {
          auto text = scalar();
          if (!text.ok()) return text.status();
          if (*text != "true" && *text != "false") {
            return absl::InvalidArgumentError(
                fmt::format("{}: queue_sync: \"{}\" is not true or false", where, *text));
          }
          c.queue_sync = *text == "true";
        } else if (key == "max_samples_per_send") {
          uint64_t n = 0;
          s = number(&n);
          c.max_samples_per_send = static_cast<size_t>(n);
        } else if (key == "queue_max_age") {
          s = duration(&c.queue_max_age);
        } else if (key == "batch_send_deadline") {
          s = duration(&c.batch_send_deadline);
        } else if (key == "remote_timeout") {
          s = duration(&c.remote_timeout);
        } else if (key == "min_backoff") {
          s = duration(&c.min_backoff);
        } else if (key == "max_backoff") {
          s = duration(&c.max_backoff);
        } else if (key == "headers") {
          if (!v.IsMap()) return absl::InvalidArgumentError(where + ": headers: expected a mapping of name: value");
          for (const auto& h : v) c.headers.emplace_back(h.first.as<std::string>(), h.second.as<std::string>());
        } else if (key == "basic_auth") {
          if (!v.IsMap()) {
            return absl::InvalidArgumentError(where + ": basic_auth: expected username: and password_file:");
          }
          for (const auto& a : v) {
            const std::string k = a.first.as<std::string>();
            if (k == "username") {
              c.basic_auth_username = a.second.as<std::string>();
            } else if (k == "password_file") {
              c.basic_auth_password_file = a.second.as<std::string>();
            } else {
              return absl::InvalidArgumentError(fmt::format(
                  "{}: basic_auth: unknown key \"{}\" (username, password_file; a password is read from a file)",
                  where, k));
            }
          }
        } else {
          return absl::InvalidArgumentError(fmt::format(
              "{}: unknown key \"{}\" (url, name, match, queue_dir, queue_max_bytes, queue_max_age, queue_sync, "
              "buffer_max_samples, max_samples_per_send, batch_send_deadline, remote_timeout, min_backoff, "
              "max_backoff, headers, bearer_token_file, basic_auth)",
              where, key));
        }
        if (!s.ok()) return s;
      }
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(fmt::format("{}: {}", where, e.what()));
    }
    if (auto s = ValidateRemoteWriteConfig(&c, data_dir, where); !s.ok()) return s;
    if (!names.insert(c.name).second) {
      return absl::InvalidArgumentError(
          fmt::format("{}: name \"{}\" is used twice: give each remote its own name", where, c.name));
    }
    if (!dirs.insert(c.queue_dir).second) {
      return absl::InvalidArgumentError(
          fmt::format("{}: queue_dir {} is used twice: give each remote its own", where, c.queue_dir));
    }
    out.push_back(std::move(c));
  }
  if (out.size() > 32) {
    return absl::InvalidArgumentError(fmt::format("config file {}: remote_write: {} remotes, at most 32", path,
                                                  out.size()));
  }
  return out;
}

// ---------------------------------------------------------------------------

namespace {

// A family of the registry (several senders share it).
template <typename Builder>
auto& RegisterFamily(Builder builder, prometheus::Registry& r, const char* name, const char* help) {
  return builder.Name(name).Help(help).Register(r);
}

}  // namespace

struct RemoteWriteSender::Metrics {
  Metrics(prometheus::Registry& r, const std::string& remote)
      : sent(RegisterFamily(prometheus::BuildCounter(), r, "sheaf_remote_write_samples_sent_total",
                    "Samples a remote-write receiver acknowledged (2xx).")
                 .Add({{"remote", remote}})),
        dropped(RegisterFamily(prometheus::BuildCounter(), r, "sheaf_remote_write_samples_dropped_total",
                       "Samples that will never be sent to a remote, by reason.")),
        pending(RegisterFamily(prometheus::BuildGauge(), r, "sheaf_remote_write_samples_pending",
                       "Samples waiting to be sent to a remote (in memory and in its queue).")
                    .Add({{"remote", remote}})),
        queue_bytes(RegisterFamily(prometheus::BuildGauge(), r, "sheaf_remote_write_queue_bytes",
                           "Bytes of a remote's on-disk queue.")
                        .Add({{"remote", remote}})),
        lag(RegisterFamily(prometheus::BuildGauge(), r, "sheaf_remote_write_lag_seconds",
                   "Age of the oldest sample waiting for a remote, since sheafd accepted it; 0 when none.")
                .Add({{"remote", remote}})),
        requests(RegisterFamily(prometheus::BuildCounter(), r, "sheaf_remote_write_requests_total",
                        "Remote-write requests, by HTTP status (code=\"error\": no answer); the receiver's own "
                        "requests have no remote label.")),
        retries(RegisterFamily(prometheus::BuildCounter(), r, "sheaf_remote_write_retries_total",
                       "Remote-write requests sent again after a 429, a 5xx or a network error.")
                    .Add({{"remote", remote}})),
        remote(remote) {
    for (const char* reason : kDropReasons) dropped.Add({{"remote", remote}, {"reason", reason}});
  }
  prometheus::Counter& sent;
  prometheus::Family<prometheus::Counter>& dropped;
  prometheus::Gauge& pending;
  prometheus::Gauge& queue_bytes;
  prometheus::Gauge& lag;
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Counter& retries;
  const std::string remote;
};

// One libcurl handle (a kept-alive connection), used by the send thread only.
struct RemoteWriteSender::Http {
  explicit Http(const RemoteWriteSender* owner) : owner(owner) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    curl = curl_easy_init();
  }
  ~Http() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
  static size_t OnBody(char* data, size_t size, size_t n, void* self) {
    auto* h = static_cast<Http*>(self);
    const size_t bytes = size * n;
    if (h->body.size() < 1024) h->body.append(data, std::min(bytes, 1024 - h->body.size()));
    return bytes;
  }
  static size_t OnHeader(char* data, size_t size, size_t n, void* self) {
    auto* h = static_cast<Http*>(self);
    std::string_view line(data, size * n);
    constexpr std::string_view kName = "retry-after:";
    if (line.size() > kName.size() &&
        std::equal(kName.begin(), kName.end(), line.begin(),
                   [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); })) {
      line.remove_prefix(kName.size());
      while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
      while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
      h->retry_after = std::string(line);
    }
    return size * n;
  }
  static int OnProgress(void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<Http*>(self)->owner->stopping_.load() ? 1 : 0;  // non-zero aborts the transfer
  }

  const RemoteWriteSender* owner;
  CURL* curl = nullptr;
  std::string body;         // the answer, its first KiB
  std::string retry_after;  // the Retry-After header, as sent
  char error[CURL_ERROR_SIZE] = {};
};

absl::StatusOr<std::unique_ptr<RemoteWriteSender>> RemoteWriteSender::Start(RemoteWriteConfig config,
                                                                             prometheus::Registry* registry) {
  spool::SpoolOptions so;
  so.dir = config.queue_dir;
  so.max_bytes = config.queue_max_bytes;
  so.max_age = config.queue_max_age;
  so.segment_bytes = SegmentBytes(config.queue_max_bytes);
  so.sync = config.queue_sync;
  auto spool = spool::Spool::Open(std::move(so));
  if (!spool.ok()) {
    return absl::FailedPreconditionError(fmt::format("remote_write {}: queue_dir {}: {}", config.name,
                                                     config.queue_dir, std::string(spool.status().message())));
  }
  std::unique_ptr<RemoteWriteSender> s(new RemoteWriteSender(std::move(config), *std::move(spool), registry));
  if (auto st = s->LoadQueue(); !st.ok()) return st;
  s->queue_thread_ = std::thread([p = s.get()] { p->QueueLoop(); });
  s->send_thread_ = std::thread([p = s.get()] { p->SendLoop(); });
  return s;
}

RemoteWriteSender::RemoteWriteSender(RemoteWriteConfig config, std::unique_ptr<spool::Spool> spool,
                                     prometheus::Registry* registry)
    : config_(std::move(config)), spool_(std::move(spool)) {
  for (const std::string& m : config_.match) {
    auto parsed = promql::ParseMetricSelector(m);
    if (parsed.ok()) selectors_.push_back(*std::move(parsed));  // checked by ValidateRemoteWriteConfig
  }
  if (registry != nullptr) metrics_ = std::make_unique<Metrics>(*registry, config_.name);
  http_ = std::make_unique<Http>(this);
  for (const char* reason : kDropReasons) stats_.samples_dropped[reason] = 0;
}

RemoteWriteSender::~RemoteWriteSender() { Stop(); }

bool RemoteWriteSender::Selects(const model::Labels& labels) const {
  return std::any_of(selectors_.begin(), selectors_.end(),
                     [&](const std::vector<model::Matcher>& m) { return model::MatchesAll(m, labels); });
}

int64_t RemoteWriteSender::Now() const { return config_.now_ms ? config_.now_ms() : WallClockMs(); }

absl::Status RemoteWriteSender::LoadQueue() {
  // What a previous run left unacknowledged: the sample counts and ages
  // are in each request's header.
  uint64_t from = spool_->Floor();
  std::vector<uint64_t> unreadable;
  for (;;) {
    auto records = spool_->Read(from, 1024, 32ull << 20);
    if (!records.ok()) {
      return absl::FailedPreconditionError(
          fmt::format("remote_write {}: reading queue_dir {}: {}", config_.name, config_.queue_dir,
                      std::string(records.status().message())));
    }
    if (records->empty()) break;
    absl::MutexLock lock(&queue_mu_);
    for (const spool::SpoolRecord& r : *records) {
      from = r.sequence + 1;
      if (r.payload.size() < kRecordHeaderBytes) {
        unreadable.push_back(r.sequence);
        continue;
      }
      const uint64_t samples = GetFixed64BE(r.payload);
      queued_[r.sequence] = {samples, static_cast<int64_t>(GetFixed64BE(std::string_view(r.payload).substr(8)))};
      queued_samples_ += samples;
    }
  }
  for (uint64_t seq : unreadable) (void)spool_->Ack(seq);
  absl::MutexLock lock(&queue_mu_);
  next_sequence_ = spool_->last_sequence() + 1;
  const spool::Spool::Stats st = spool_->stats();
  seen_full_ = st.dropped_records_full;
  seen_too_old_ = st.dropped_records_too_old;
  if (!queued_.empty()) {
    LogInfo("remote_write {}: {} samples in {} requests queued in {} from before; sending them first", config_.name,
            queued_samples_, queued_.size(), config_.queue_dir);
  }
  return absl::OkStatus();
}

void RemoteWriteSender::Enqueue(const std::shared_ptr<const ForwardedSeries>& series,
                                std::vector<model::Sample> samples) {
  if (samples.empty()) return;
  const size_t n = samples.size();
  {
    absl::MutexLock lock(&buffer_mu_);
    if (!stopping_.load(std::memory_order_relaxed) && buffered_samples_ + n <= config_.buffer_max_samples) {
      const bool wake = buffer_.empty() || (buffered_samples_ < config_.max_samples_per_send &&
                                            buffered_samples_ + n >= config_.max_samples_per_send);
      buffer_.push_back({series, std::move(samples), Now()});
      buffered_samples_ += n;
      buffer_full_logged_ = false;
      if (wake) buffer_cv_.Signal();
      return;
    }
    if (!buffer_full_logged_) {
      buffer_full_logged_ = true;  // once per episode: the counter has the rest
      LogWarn("remote_write {}: the in-memory buffer cannot take {} more samples ({} wait to be queued on disk, "
              "at most {}): dropping samples until it has room "
              "(sheaf_remote_write_samples_dropped_total{{reason=\"buffer_full\"}})",
              config_.name, n, buffered_samples_, config_.buffer_max_samples);
    }
  }
  CountDropped("buffer_full", n);
}

std::string RemoteWriteSender::CutRequest(uint64_t* samples, int64_t* oldest_ms) {
  prompb::WriteRequest request;
  std::unordered_map<storage::SeriesId, prompb::TimeSeries*> by_series;
  const size_t limit = RequestBytesLimit(config_);
  size_t bytes = 0, n = 0;
  int64_t oldest = std::numeric_limits<int64_t>::max();
  while (!buffer_.empty() && n < config_.max_samples_per_send) {
    Pending& p = buffer_.front();
    auto [it, fresh] = by_series.try_emplace(p.series->id, nullptr);
    const size_t label_bytes = fresh ? LabelBytes(p.series->labels) : 0;
    const size_t room = bytes + label_bytes < limit ? (limit - bytes - label_bytes) / kSampleBytes : 0;
    const size_t take = std::min({p.samples.size(), config_.max_samples_per_send - n, room});
    if (take == 0) {
      if (fresh) by_series.erase(it);
      if (n > 0) break;  // the next request takes it
      // Not even one sample of this series fits an empty request.
      LogError("remote_write {}: a series of {} label bytes does not fit in one request: {} samples dropped",
               config_.name, label_bytes, p.samples.size());
      buffered_samples_ -= p.samples.size();
      CountDropped("too_large", p.samples.size());
      buffer_.pop_front();
      continue;
    }
    if (fresh) {
      it->second = request.add_timeseries();
      for (const model::Label& l : p.series->labels) {
        prompb::Label* pl = it->second->add_labels();
        pl->set_name(l.name);
        pl->set_value(l.value);
      }
    }
    for (size_t i = 0; i < take; ++i) {
      prompb::Sample* s = it->second->add_samples();
      s->set_timestamp(p.samples[i].timestamp_ms);
      s->set_value(p.samples[i].value);
    }
    oldest = std::min(oldest, p.enqueued_ms);
    n += take;
    bytes += label_bytes + take * kSampleBytes;
    buffered_samples_ -= take;
    if (take == p.samples.size()) {
      buffer_.pop_front();
    } else {
      p.samples.erase(p.samples.begin(), p.samples.begin() + static_cast<ptrdiff_t>(take));
    }
  }
  if (n == 0) return "";
  // Time order within a series, as the spec asks; of two samples with one
  // timestamp the later accepted wins, as in the store.
  for (prompb::TimeSeries& ts : *request.mutable_timeseries()) {
    auto* s = ts.mutable_samples();
    std::stable_sort(s->begin(), s->end(),
                     [](const prompb::Sample& a, const prompb::Sample& b) { return a.timestamp() < b.timestamp(); });
    int kept = 0;
    for (int i = 0; i < s->size(); ++i) {
      if (i + 1 < s->size() && s->Get(i + 1).timestamp() == s->Get(i).timestamp()) continue;
      if (kept != i) *s->Mutable(kept) = s->Get(i);
      ++kept;
    }
    n -= static_cast<size_t>(s->size() - kept);
    s->DeleteSubrange(kept, s->size() - kept);
  }
  std::string raw = request.SerializeAsString();
  std::string payload;
  PutFixed64BE(payload, n);
  PutFixed64BE(payload, static_cast<uint64_t>(oldest));
  std::string compressed;
  snappy::Compress(raw.data(), raw.size(), &compressed);
  payload += compressed;
  *samples = n;
  *oldest_ms = oldest;
  return payload;
}

void RemoteWriteSender::QueueLoop() {
  for (;;) {
    std::string payload;
    uint64_t samples = 0;
    int64_t oldest = 0;
    {
      absl::MutexLock lock(&buffer_mu_);
      // A request is cut when it is full, when its oldest sample waited
      // batch_send_deadline, or to write everything out when stopping.
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(buffer_mu_) {
        return buffered_samples_ >= config_.max_samples_per_send || stopping_.load() ||
               (!buffer_.empty() && Now() >= buffer_.front().enqueued_ms + config_.batch_send_deadline.count());
      };
      if (!ready()) {
        // Wakes at least every second to refresh the gauges.
        int64_t wait = 1000;
        if (!buffer_.empty()) {
          wait = std::min<int64_t>(wait, buffer_.front().enqueued_ms + config_.batch_send_deadline.count() - Now());
        }
        buffer_cv_.WaitWithTimeout(&buffer_mu_, absl::Milliseconds(std::max<int64_t>(wait, 1)));
      }
      if (stopping_.load() && buffer_.empty()) {
        queue_done_ = true;
        break;
      }
      if (ready()) payload = CutRequest(&samples, &oldest);
    }
    if (!payload.empty()) AppendToQueue(std::move(payload), samples, oldest);
    UpdateGauges();
  }
  UpdateGauges();
}

void RemoteWriteSender::AppendToQueue(std::string payload, uint64_t samples, int64_t oldest_ms) {
  uint64_t sequence;
  {
    absl::MutexLock lock(&queue_mu_);
    sequence = next_sequence_;
  }
  for (bool logged = false;;) {
    absl::Status s = spool_->Append(sequence, payload);
    if (s.ok()) break;
    if (s.code() == absl::StatusCode::kInvalidArgument) {  // cannot fit a segment: RequestBytesLimit prevents it
      LogError("remote_write {}: a request cannot be queued: {}", config_.name, std::string(s.message()));
      CountDropped("too_large", samples);
      return;
    }
    if (!logged) {
      logged = true;
      LogError("remote_write {}: cannot write the queue in {}: {}; retrying every second (new samples are dropped "
               "once the in-memory buffer is full)",
               config_.name, config_.queue_dir, std::string(s.message()));
    }
    // While stopping, one more try, then the request is lost (counted).
    if (stopping_.load()) {
      if (!spool_->Append(sequence, payload).ok()) {
        CountDropped("queue_full", samples);
        return;
      }
      break;
    }
    SleepUnlessStopping(std::chrono::seconds(1));
  }
  {
    absl::MutexLock lock(&queue_mu_);
    queued_[sequence] = {samples, oldest_ms};
    queued_samples_ += samples;
    next_sequence_ = sequence + 1;
    queue_cv_.Signal();
  }
  ReconcileDrops();
}

void RemoteWriteSender::ReconcileDrops() {
  const spool::Spool::Stats st = spool_->stats();
  const uint64_t floor = spool_->Floor();
  uint64_t dropped = 0;
  const char* reason = "queue_corrupt";
  {
    absl::MutexLock lock(&queue_mu_);
    if (st.dropped_records_full > seen_full_) {
      reason = "queue_full";
    } else if (st.dropped_records_too_old > seen_too_old_) {
      reason = "queue_too_old";
    }
    seen_full_ = st.dropped_records_full;
    seen_too_old_ = st.dropped_records_too_old;
    // Below the floor, nothing is held unacknowledged: what is still
    // listed here (and not being sent) was dropped by the spool.
    for (auto it = queued_.begin(); it != queued_.end() && it->first < floor;) {
      if (it->first == in_flight_) {
        ++it;
        continue;
      }
      dropped += it->second.samples;
      queued_samples_ -= it->second.samples;
      it = queued_.erase(it);
    }
  }
  if (dropped > 0) {
    uint64_t suppressed = 0;
    if (drop_log_.Allow(&suppressed)) {
      LogWarn("remote_write {}: {} queued samples dropped ({}; queue_max_bytes {}, queue_max_age {})", config_.name,
              dropped, reason, config_.queue_max_bytes, FormatDuration(config_.queue_max_age));
    }
    CountDropped(reason, dropped);
  }
}

RemoteWriteSender::Attempt RemoteWriteSender::Post(const std::string& body) {
  Attempt a;
  Http& h = *http_;
  CURL* c = h.curl;
  if (c == nullptr) {
    a.error = "libcurl could not be initialized";
    return a;
  }
  curl_easy_reset(c);  // keeps the connection cache
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Encoding: snappy");
  headers = curl_slist_append(headers, "Content-Type: application/x-protobuf");
  headers = curl_slist_append(headers, "X-Prometheus-Remote-Write-Version: 0.1.0");
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  for (const auto& [name, value] : config_.headers) {
    headers = curl_slist_append(headers, fmt::format("{}: {}", name, value).c_str());
  }
  std::string password;
  if (!config_.bearer_token_file.empty()) {
    auto token = ReadSecretFile(config_.bearer_token_file, "bearer_token_file");
    if (!token.ok()) {
      curl_slist_free_all(headers);
      a.error = std::string(token.status().message());
      return a;
    }
    headers = curl_slist_append(headers, fmt::format("Authorization: Bearer {}", *token).c_str());
  } else if (!config_.basic_auth_username.empty()) {
    auto p = ReadSecretFile(config_.basic_auth_password_file, "basic_auth.password_file");
    if (!p.ok()) {
      curl_slist_free_all(headers);
      a.error = std::string(p.status().message());
      return a;
    }
    password = *std::move(p);
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERNAME, config_.basic_auth_username.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, password.c_str());
  }
  h.body.clear();
  h.retry_after.clear();
  h.error[0] = '\0';
  curl_easy_setopt(c, CURLOPT_URL, config_.url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "sheafd/" SHEAF_VERSION);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(config_.remote_timeout.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config_.remote_timeout.count()));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_PROXY, "");  // no proxy from the environment: the URL is reached directly
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h.error);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Http::OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &h);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &Http::OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &Http::OnProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &h);
  const CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    a.error = h.error[0] != '\0' ? h.error : curl_easy_strerror(rc);
    return a;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.code);
  if (a.code < 200 || a.code >= 300) {
    a.error = h.body;
    while (!a.error.empty() && std::isspace(static_cast<unsigned char>(a.error.back()))) a.error.pop_back();
    a.retry_after = ParseRetryAfter(h.retry_after, WallClockMs());
  }
  return a;
}

void RemoteWriteSender::SendLoop() {
  uint64_t from = spool_->Floor();
  std::mt19937_64 random(std::random_device{}());
  bool failing = false;  // logged once per outage
  while (!stopping_.load()) {
    auto records = spool_->Read(from, 1, 64ull << 20);
    if (!records.ok()) {
      LogError("remote_write {}: reading the queue in {}: {}", config_.name, config_.queue_dir,
               std::string(records.status().message()));
      SleepUnlessStopping(std::chrono::seconds(1));
      continue;
    }
    if (records->empty()) {
      absl::MutexLock lock(&queue_mu_);
      if (next_sequence_ <= from && !stopping_.load()) queue_cv_.WaitWithTimeout(&queue_mu_, absl::Seconds(1));
      continue;
    }
    spool::SpoolRecord& r = records->front();
    from = r.sequence + 1;
    if (r.payload.size() < kRecordHeaderBytes) {  // LoadQueue acks those; a fresh one cannot be short
      (void)spool_->Ack(r.sequence);
      continue;
    }
    const uint64_t samples = GetFixed64BE(r.payload);
    {
      absl::MutexLock lock(&queue_mu_);
      in_flight_ = r.sequence;
    }
    ReconcileDrops();  // requests the spool skipped (damaged) are counted now
    const std::string body = r.payload.substr(kRecordHeaderBytes);
    std::chrono::milliseconds backoff = config_.min_backoff;
    bool done = false;
    while (!done) {
      const Attempt a = Post(body);
      if (a.code == 0 && stopping_.load()) break;  // aborted by Stop: stays queued
      CountRequest(a);
      if (a.code >= 200 && a.code < 300) {
        if (failing) LogInfo("remote_write {}: {} answers again", config_.name, config_.url);
        failing = false;
        Finish(r.sequence, samples, nullptr);
        done = true;
      } else if (a.code != 0 && a.code != 429 && a.code < 500) {
        // The spec: a 4xx other than 429 will fail again; the request is dropped.
        LogError("remote_write {}: {} refused a request of {} samples with HTTP {}: {}; dropped, not retried",
                 config_.name, config_.url, samples, a.code, a.error.empty() ? "(no message)" : a.error);
        Finish(r.sequence, samples, "rejected");
        done = true;
      } else {
        // Jitter: a random wait in [backoff/2, backoff], then at least
        // what the receiver asked for.
        const int64_t b = backoff.count();
        std::chrono::milliseconds wait(b / 2 + static_cast<int64_t>(random() % static_cast<uint64_t>(b / 2 + 1)));
        wait = std::max(wait, a.retry_after);
        if (!failing) {
          failing = true;
          LogWarn("remote_write {}: {}: {}; retrying with backoff up to {} (requests and retries are counted in "
                  "sheaf_remote_write_requests_total and _retries_total)",
                  config_.name, config_.url,
                  a.code == 0 ? a.error : fmt::format("HTTP {} {}", a.code, a.error), FormatDuration(config_.max_backoff));
        }
        {
          absl::MutexLock lock(&stats_mu_);
          ++stats_.retries;
        }
        if (metrics_) metrics_->retries.Increment();
        if (!SleepUnlessStopping(wait)) break;
        backoff = std::min(backoff * 2, config_.max_backoff);
      }
    }
    if (!done) {
      absl::MutexLock lock(&queue_mu_);
      in_flight_ = 0;
      break;
    }
  }
}

void RemoteWriteSender::Finish(uint64_t sequence, uint64_t samples, const char* dropped_reason) {
  if (auto s = spool_->Ack(sequence); !s.ok()) {
    LogError("remote_write {}: acknowledging a request in {}: {}", config_.name, config_.queue_dir, std::string(s.message()));
  }
  {
    absl::MutexLock lock(&queue_mu_);
    if (queued_.erase(sequence) > 0) queued_samples_ -= samples;
    in_flight_ = 0;
  }
  if (dropped_reason != nullptr) {
    CountDropped(dropped_reason, samples);
  } else {
    {
      absl::MutexLock lock(&stats_mu_);
      stats_.samples_sent += samples;
    }
    if (metrics_) metrics_->sent.Increment(static_cast<double>(samples));
  }
  UpdateGauges();  // pending and lag fall as soon as a request is done
}

void RemoteWriteSender::CountDropped(const std::string& reason, uint64_t samples) {
  {
    absl::MutexLock lock(&stats_mu_);
    stats_.samples_dropped[reason] += samples;
  }
  if (metrics_) {
    metrics_->dropped.Add({{"remote", metrics_->remote}, {"reason", reason}}).Increment(static_cast<double>(samples));
  }
}

void RemoteWriteSender::CountRequest(const Attempt& a) {
  const std::string code = a.code == 0 ? "error" : std::to_string(a.code);
  {
    absl::MutexLock lock(&stats_mu_);
    ++stats_.requests[code];
  }
  if (metrics_) metrics_->requests.Add({{"remote", metrics_->remote}, {"code", code}}).Increment();
}

void RemoteWriteSender::UpdateGauges() {
  const int64_t now = Now();
  int64_t oldest = std::numeric_limits<int64_t>::max();
  uint64_t pending = 0;
  {
    absl::MutexLock lock(&buffer_mu_);
    pending += buffered_samples_;
    if (!buffer_.empty()) oldest = buffer_.front().enqueued_ms;
  }
  {
    absl::MutexLock lock(&queue_mu_);
    pending += queued_samples_;
    // Requests are queued in the order their samples arrived.
    if (!queued_.empty()) oldest = std::min(oldest, queued_.begin()->second.oldest_ms);
  }
  const double lag = oldest == std::numeric_limits<int64_t>::max() ? 0 : std::max<int64_t>(0, now - oldest) / 1000.0;
  const uint64_t bytes = spool_->stats().bytes;
  {
    absl::MutexLock lock(&stats_mu_);
    stats_.samples_pending = pending;
    stats_.lag_seconds = lag;
    stats_.queue_bytes = bytes;
  }
  if (metrics_) {
    metrics_->pending.Set(static_cast<double>(pending));
    metrics_->lag.Set(lag);
    metrics_->queue_bytes.Set(static_cast<double>(bytes));
  }
}

bool RemoteWriteSender::SleepUnlessStopping(std::chrono::milliseconds wait) {
  absl::MutexLock lock(&queue_mu_);
  const absl::Time until = absl::Now() + absl::FromChrono(wait);
  while (!stopping_.load()) {
    if (queue_cv_.WaitWithDeadline(&queue_mu_, until)) return !stopping_.load();
  }
  return false;
}

void RemoteWriteSender::Stop() {
  std::call_once(stop_once_, [this] {
    stopping_.store(true);
    {
      absl::MutexLock lock(&buffer_mu_);
      buffer_cv_.SignalAll();
    }
    {
      absl::MutexLock lock(&queue_mu_);
      queue_cv_.SignalAll();
    }
    // The queue thread writes what is buffered first (the sender no longer
    // sends it: it stays on disk for the next start).
    if (queue_thread_.joinable()) queue_thread_.join();
    if (send_thread_.joinable()) send_thread_.join();
    UpdateGauges();
    const Stats st = stats();
    LogInfo("remote_write {}: stopped; {} samples sent, {} left queued in {}", config_.name, st.samples_sent,
            st.samples_pending, config_.queue_dir);
  });
}

RemoteWriteSender::Stats RemoteWriteSender::stats() const {
  absl::MutexLock lock(&stats_mu_);
  return stats_;
}

// ---------------------------------------------------------------------------

namespace {
std::vector<storage::TenantId> OnePerSender(std::vector<storage::TenantId> tenants, size_t senders) {
  tenants.resize(senders, storage::kDefaultTenant);
  return tenants;
}
}  // namespace

RemoteWriteFanout::RemoteWriteFanout(SeriesLookup lookup, std::vector<std::unique_ptr<RemoteWriteSender>> senders,
                                     std::vector<storage::TenantId> tenants)
    : lookup_(std::move(lookup)),
      senders_(std::move(senders)),
      tenants_(OnePerSender(std::move(tenants), senders_.size())) {}

RemoteWriteFanout::~RemoteWriteFanout() { Stop(); }

void RemoteWriteFanout::Stop() {
  for (const auto& s : senders_) s->Stop();
}

void RemoteWriteFanout::Publish(const storage::AppendBatch& batch, const storage::AppendResult& result) {
  if (std::find(tenants_.begin(), tenants_.end(), batch.tenant) == tenants_.end()) return;  // no remote for it
  struct Hit {
    storage::SeriesId id;
    size_t index;  // in batch.series
    Answer answer;
  };
  std::vector<Hit> hits;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < batch.series.size(); ++i) {
      const storage::SeriesSamples& ss = batch.series[i];
      if (ss.samples.empty()) continue;
      const storage::SeriesId id = ss.id;
      if (id < known_.size() && known_[id] == 1) continue;
      if (id < known_.size() && known_[id] == 2) {
        auto it = answers_.find(id);
        if (it != answers_.end()) {
          hits.push_back({id, i, it->second});
          continue;
        }
      }
      std::optional<storage::SeriesInfo> info = lookup_(id);
      if (!info) continue;  // deleted meanwhile
      Answer a;
      // A series id belongs to one tenant, so the answer cached per id
      // holds for every later batch.
      for (size_t r = 0; r < senders_.size(); ++r) {
        if (tenants_[r] == batch.tenant && senders_[r]->Selects(info->labels)) a.remotes |= 1u << r;
      }
      if (a.remotes != 0) {
        const size_t bytes = LabelBytes(info->labels) + 64;
        if (cached_bytes_ + bytes > kMaxCachedLabelBytes) {
          answers_.clear();
          std::replace(known_.begin(), known_.end(), uint8_t{2}, uint8_t{0});
          cached_bytes_ = 0;
        }
        a.series = std::make_shared<const ForwardedSeries>(ForwardedSeries{id, std::move(info->labels)});
        answers_[id] = a;
        cached_bytes_ += bytes;
        hits.push_back({id, i, a});
      }
      if (id < kMaxDenseId) {
        if (known_.size() <= id) known_.resize(std::max<size_t>(id + 1, known_.size() * 3 / 2), 0);
        known_[id] = a.remotes != 0 ? 2 : 1;
      }
    }
  }
  if (hits.empty()) return;
  // A series may appear more than once in a batch (the store joins its
  // entries): grouped, batch order kept within a series.
  std::stable_sort(hits.begin(), hits.end(), [](const Hit& a, const Hit& b) { return a.id < b.id; });
  for (size_t i = 0; i < hits.size();) {
    const Hit& hit = hits[i];
    std::vector<model::Sample> samples;
    for (; i < hits.size() && hits[i].id == hit.id; ++i) {
      const auto& in = batch.series[hits[i].index].samples;
      samples.insert(samples.end(), in.begin(), in.end());
    }
    if (std::any_of(result.deleted.begin(), result.deleted.end(), [&](const auto& d) { return d.first == hit.id; })) {
      continue;
    }
    // What the store kept: time order, the later of equal timestamps, and
    // not the `too_old` oldest ones it refused.
    std::stable_sort(samples.begin(), samples.end(),
                     [](const model::Sample& a, const model::Sample& b) { return a.timestamp_ms < b.timestamp_ms; });
    size_t kept = 0;
    for (size_t k = 0; k < samples.size(); ++k) {
      if (k + 1 < samples.size() && samples[k + 1].timestamp_ms == samples[k].timestamp_ms) continue;
      samples[kept++] = samples[k];
    }
    samples.resize(kept);
    for (const auto& [id, n] : result.too_old) {
      if (id == hit.id) samples.erase(samples.begin(), samples.begin() + static_cast<ptrdiff_t>(std::min<uint64_t>(n, samples.size())));
    }
    if (samples.empty()) continue;
    const uint32_t remotes = hit.answer.remotes;
    for (size_t r = 0; r < senders_.size(); ++r) {
      if ((remotes & (1u << r)) == 0) continue;
      const bool last = (remotes >> (r + 1)) == 0;
      senders_[r]->Enqueue(hit.answer.series, last ? std::move(samples) : samples);
    }
  }
}

}  // namespace sheaf::daemon
