// The evaluator: selectors, subqueries and function calls. Aggregations
// are in aggregate.cc, binary operators in binary.cc.
#include "promql/evaluator.h"

#include <fmt/format.h>
#include <re2/re2.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "model/labels.h"
#include "promql/series_reader.h"
#include "storage/series_store.h"

namespace sheaf::promql::internal {
namespace {

const Expr& Unwrap(const Expr& e) {
  const Expr* p = &e;
  while (p->kind == NodeKind::kParen) p = p->As<Paren>().expr.get();
  return *p;
}

int64_t FloorToMultiple(int64_t t, int64_t step) {
  int64_t q = t / step;
  if (q * step > t) --q;
  return q * step;
}

// Range functions a rollup window answers exactly: their value depends
// only on a window's count, sum, min, max, first and last samples and
// counter increase.
enum class RollupFn { kNone, kCount, kSum, kAvg, kMin, kMax, kLast, kPresent, kAbsent, kRate, kIncrease, kDelta };

RollupFn RollupFunction(std::string_view name) {
  static const auto* const kTable = new std::map<std::string_view, RollupFn>{
      {"count_over_time", RollupFn::kCount},
      {"sum_over_time", RollupFn::kSum},
      {"avg_over_time", RollupFn::kAvg},
      {"min_over_time", RollupFn::kMin},
      {"max_over_time", RollupFn::kMax},
      {"last_over_time", RollupFn::kLast},
      {"present_over_time", RollupFn::kPresent},
      {"absent_over_time", RollupFn::kAbsent},
      {"rate", RollupFn::kRate},
      {"increase", RollupFn::kIncrease},
      {"delta", RollupFn::kDelta},
  };
  auto it = kTable->find(name);
  return it == kTable->end() ? RollupFn::kNone : it->second;
}

int64_t CeilToMultiple(int64_t t, int64_t step) {
  int64_t q = t / step;
  if (q * step < t) ++q;
  return q * step;
}

// The labels absent() and absent_over_time() give their answer: the
// selector's `name="value"` matchers, except for names matched otherwise too.
Labels AbsentLabels(const Expr& arg) {
  const Expr& e = Unwrap(arg);
  const VectorSelector* sel = nullptr;
  if (e.kind == NodeKind::kVectorSelector) sel = &e.As<VectorSelector>();
  if (e.kind == NodeKind::kMatrixSelector) sel = e.As<MatrixSelector>().selector.get();
  Labels out;
  if (sel == nullptr) return out;
  std::vector<std::string> drop;
  for (const model::Matcher& m : sel->matchers) {
    if (m.name() == model::kMetricNameLabel) continue;
    if (m.op() == model::Matcher::Op::kEqual &&
        std::none_of(out.begin(), out.end(), [&](const model::Label& l) { return l.name == m.name(); })) {
      SetLabel(out, m.name(), m.value());
    } else {
      drop.push_back(m.name());
    }
  }
  for (const std::string& name : drop) SetLabel(out, name, "");
  return out;
}

// Go's regexp.Expand for label_replace's replacement: $1, ${1}, $name,
// ${name}, $$; a malformed reference is copied as it is.
std::string Expand(std::string_view tmpl, const re2::RE2& re, const std::vector<re2::StringPiece>& groups) {
  std::string out;
  auto is_name_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (size_t i = 0; i < tmpl.size();) {
    if (tmpl[i] != '$') {
      out += tmpl[i++];
      continue;
    }
    if (i + 1 < tmpl.size() && tmpl[i + 1] == '$') {
      out += '$';
      i += 2;
      continue;
    }
    std::string_view name;
    size_t next;
    if (i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
      size_t close = tmpl.find('}', i + 2);
      if (close == std::string_view::npos || close == i + 2) {
        out += tmpl[i++];
        continue;
      }
      name = tmpl.substr(i + 2, close - i - 2);
      if (!std::all_of(name.begin(), name.end(), is_name_char)) {
        out += tmpl[i++];
        continue;
      }
      next = close + 1;
    } else {
      size_t j = i + 1;
      while (j < tmpl.size() && is_name_char(tmpl[j])) ++j;
      if (j == i + 1) {
        out += tmpl[i++];
        continue;
      }
      name = tmpl.substr(i + 1, j - i - 1);
      next = j;
    }
    int index = -1;
    if (std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      index = name.size() <= 9 ? std::stoi(std::string(name)) : -1;
    } else {
      const auto& named = re.NamedCapturingGroups();
      if (auto it = named.find(std::string(name)); it != named.end()) index = it->second;
    }
    if (index >= 0 && static_cast<size_t>(index) < groups.size() && groups[index].data() != nullptr) {
      out.append(groups[index].data(), groups[index].size());
    }
    i = next;
  }
  return out;
}

}  // namespace

absl::Status Evaluator::Poll() {
  if (params_.check) return params_.check();
  return absl::OkStatus();
}

absl::Status Evaluator::Charge(uint64_t samples) {
  charged_ += samples;
  if (charged_ > options_.limits.max_samples) {
    return absl::ResourceExhaustedError(
        fmt::format("query processing would load more than {} samples (the query max-samples limit); select fewer "
                    "series, a shorter range or a larger step",
                    options_.limits.max_samples));
  }
  if (++polls_ % 16 == 0) return Poll();
  return absl::OkStatus();
}

VSeries Evaluator::NewSeries(Labels labels, size_t n) const {
  VSeries s;
  s.labels = std::move(labels);
  s.v.assign(n, 0);
  s.has.assign(n, 0);
  return s;
}

int64_t Evaluator::RefTime(const AtModifier& at, int64_t offset_ms, int64_t t) const {
  switch (at.kind) {
    case AtModifier::Kind::kNone:
      break;
    case AtModifier::Kind::kTimestamp:
      t = at.timestamp_ms;
      break;
    case AtModifier::Kind::kStart:
      t = params_.start_ms;
      break;
    case AtModifier::Kind::kEnd:
      t = params_.end_ms;
      break;
  }
  return t - offset_ms;
}

void Evaluator::RefRange(const AtModifier& at, int64_t offset_ms, const Steps& steps, int64_t* min_ref,
                         int64_t* max_ref) const {
  *min_ref = RefTime(at, offset_ms, steps.start);
  *max_ref = RefTime(at, offset_ms, steps.At(steps.n - 1));
}

absl::StatusOr<std::vector<Evaluator::Selected>> Evaluator::Select(const VectorSelector& sel) {
  auto ids = store_->Select(params_.tenant, sel.matchers);
  if (!ids.ok()) return ids.status();
  stats_->series_selected += ids->size();
  if (stats_->series_selected > options_.limits.max_series) {
    return absl::ResourceExhaustedError(fmt::format(
        "query selects more than {} series (the query max-series limit); narrow the selectors with more labels",
        options_.limits.max_series));
  }
  std::vector<Selected> series;
  series.reserve(ids->size());
  for (storage::SeriesId id : *ids) {
    if (auto info = store_->GetSeries(id)) series.push_back({std::move(info->labels), id, info->type});
  }
  std::sort(series.begin(), series.end(), [](const Selected& a, const Selected& b) { return a.labels < b.labels; });
  return series;
}

absl::Status Evaluator::ReadRaw(storage::SeriesId id, int64_t min_ms, int64_t max_ms, std::vector<Sample>* samples) {
  PROMQL_RETURN_IF_ERROR(Poll());
  PROMQL_RETURN_IF_ERROR(ReadSeriesSamples(store_, id, min_ms, max_ms, samples));
  return CountRaw(*samples);
}

absl::Status Evaluator::CountRaw(const std::vector<Sample>& samples) {
  stats_->samples_read += samples.size();
  NoteResolution(0);
  return Charge(samples.size());
}

absl::StatusOr<bool> Evaluator::ReadWindows(storage::SeriesId id, int64_t resolution, int64_t min_ms, int64_t max_ms,
                                            std::vector<Window>* windows) {
  PROMQL_RETURN_IF_ERROR(Poll());
  auto w = store_->ReadRollup(id, resolution, min_ms, max_ms);
  if (!w.ok()) return w.status();
  *windows = *std::move(w);
  stats_->windows_read += windows->size();
  PROMQL_RETURN_IF_ERROR(Charge(windows->size()));
  // A NaN (a stale marker, or a NaN value) makes min, max and sums of a
  // window differ from what PromQL does with it: read raw samples instead.
  for (const Window& x : *windows) {
    if (std::isnan(x.second.sum) || std::isnan(x.second.increase)) return false;
  }
  NoteResolution(resolution);
  return true;
}

void Evaluator::NoteResolution(int64_t resolution) {
  if (resolution_noted_ && stats_->rollup_resolution_ms <= resolution) return;
  stats_->rollup_resolution_ms = resolution;
  resolution_noted_ = true;
}

int64_t Evaluator::PickRollup(const AtModifier& at, int64_t offset_ms, int64_t range_ms, const Steps& steps) const {
  if (options_.rollups == EngineOptions::Rollups::kNever) return 0;
  int64_t min_ref, max_ref;
  RefRange(at, offset_ms, steps, &min_ref, &max_ref);
  if (options_.rollups == EngineOptions::Rollups::kAuto &&
      min_ref - std::max(range_ms, options_.lookback_ms) >= store_->RolledUpUntil()) {
    return 0;
  }
  int64_t best = 0;
  for (int64_t r : store_->RollupResolutions()) {
    if (r <= 0 || min_ref % r != 0 || range_ms % r != 0) continue;
    if (steps.n > 1 && !at.IsSet() && steps.step % r != 0) continue;
    best = std::max(best, r);
  }
  return best;
}

absl::Status Evaluator::ForEachSelectedSeries(const VectorSelector& sel, int64_t min_ms, int64_t max_ms,
                                              const RangeSeriesFn& fn) {
  PROMQL_ASSIGN_OR_RETURN(auto series, Select(sel));
  std::vector<storage::SeriesId> ids;
  ids.reserve(series.size());
  for (const Selected& s : series) ids.push_back(s.id);
  SeriesReader reader(store_, std::move(ids), min_ms, max_ms, options_.read_threads, nullptr, [this] { return Poll(); });
  std::vector<Sample> samples;
  for (const Selected& s : series) {
    PROMQL_RETURN_IF_ERROR(Poll());
    PROMQL_RETURN_IF_ERROR(reader.Next(&samples));
    PROMQL_RETURN_IF_ERROR(CountRaw(samples));
    if (samples.empty()) continue;
    PROMQL_RETURN_IF_ERROR(fn(s.labels, samples));
  }
  return absl::OkStatus();
}

absl::Status Evaluator::MapSelectedSeries(const VectorSelector& sel, int64_t min_ms, int64_t max_ms, size_t steps,
                                          bool keep_name, const StepFn& fn, std::vector<VSeries>* out,
                                          const VSeriesSink* sink) {
  PROMQL_ASSIGN_OR_RETURN(auto series, Select(sel));
  std::vector<storage::SeriesId> ids;
  ids.reserve(series.size());
  for (const Selected& s : series) ids.push_back(s.id);
  // Slot i is written only by the reader thread of series i, and read here
  // after Next has handed series i out (its lock orders the two).
  std::vector<VSeries> computed(series.size());
  std::vector<uint8_t> any(series.size(), 0);
  // Declared after the slots: destroyed (its threads joined) before them.
  SeriesReader reader(store_, std::move(ids), min_ms, max_ms, options_.read_threads,
                      [&](size_t i, std::vector<Sample>* samples) {
                        if (samples->empty()) return;
                        VSeries& s = computed[i];
                        s.v.assign(steps, 0);
                        s.has.assign(steps, 0);
                        any[i] = fn(*samples, s.v.data(), s.has.data());
                        if (!any[i]) s = VSeries();
                      },
                      [this] { return Poll(); });
  std::vector<Sample> samples;
  for (size_t i = 0; i < series.size(); ++i) {
    PROMQL_RETURN_IF_ERROR(Poll());
    PROMQL_RETURN_IF_ERROR(reader.Next(&samples));
    PROMQL_RETURN_IF_ERROR(CountRaw(samples));
    if (!any[i]) continue;
    PROMQL_RETURN_IF_ERROR(Charge(steps));
    VSeries& s = computed[i];
    s.labels = keep_name ? std::move(series[i].labels) : WithoutName(std::move(series[i].labels));
    if (sink != nullptr) {
      PROMQL_RETURN_IF_ERROR((*sink)(std::move(s)));
      s = VSeries();  // its memory back now
    } else {
      out->push_back(std::move(s));
    }
  }
  return absl::OkStatus();
}

absl::Status Evaluator::AddStepSeries(const Labels& labels, bool keep_name, std::span<const Sample> samples,
                                      size_t steps, const StepFn& fn, std::vector<VSeries>* out) {
  VSeries s = NewSeries(keep_name ? labels : WithoutName(labels), steps);
  PROMQL_RETURN_IF_ERROR(Charge(steps));
  if (fn(samples, s.v.data(), s.has.data())) out->push_back(std::move(s));
  return absl::OkStatus();
}

absl::Status Evaluator::ForEachRangeSeries(const Expr& expr, const Steps& steps, const RangeSeriesFn& fn) {
  const Expr& e = Unwrap(expr);
  if (e.kind == NodeKind::kMatrixSelector) {
    const auto& ms = e.As<MatrixSelector>();
    int64_t min_ref, max_ref;
    RefRange(ms.selector->at, ms.selector->offset_ms, steps, &min_ref, &max_ref);
    std::vector<Sample> fresh;
    return ForEachSelectedSeries(
        *ms.selector, min_ref - ms.range_ms, max_ref,
        [&](const Labels& labels, std::span<const Sample> samples) -> absl::Status {
          // Range functions never see stale markers.
          if (std::none_of(samples.begin(), samples.end(), [](const Sample& x) { return IsStaleMarker(x.value); })) {
            return fn(labels, samples);
          }
          fresh.clear();
          for (const Sample& x : samples) {
            if (!IsStaleMarker(x.value)) fresh.push_back(x);
          }
          return fresh.empty() ? absl::OkStatus() : fn(labels, fresh);
        });
  }
  if (e.kind != NodeKind::kSubquery) {
    return absl::InternalError(fmt::format("range vector expected, got {}", ValueTypeName(e.type())));
  }
  // A subquery: the inner expression evaluated at its own steps (aligned
  // to multiples of its step, as Prometheus does) over every window the
  // outer steps need; its points are then the samples of a range vector.
  const auto& sq = e.As<Subquery>();
  int64_t min_ref, max_ref;
  RefRange(sq.at, sq.offset_ms, steps, &min_ref, &max_ref);
  Steps inner;
  inner.step = sq.step_ms > 0 ? sq.step_ms : options_.default_subquery_step_ms;
  inner.start = CeilToMultiple(min_ref - sq.range_ms, inner.step);
  inner.end = max_ref;
  if (inner.start > inner.end) return absl::OkStatus();
  inner.n = static_cast<size_t>((inner.end - inner.start) / inner.step) + 1;
  PROMQL_ASSIGN_OR_RETURN(Value v, Eval(*sq.expr, inner));
  if (v.type != ValueType::kVector) return absl::InternalError("subquery of a non-vector");
  SortByLabels(v.vec);
  std::vector<Sample> samples;
  for (const VSeries& s : v.vec) {
    samples.clear();
    for (size_t i = 0; i < inner.n; ++i) {
      if (s.has[i]) samples.push_back(Sample{inner.At(i), s.v[i]});
    }
    if (samples.empty()) continue;
    PROMQL_RETURN_IF_ERROR(fn(s.labels, samples));
  }
  return absl::OkStatus();
}

absl::StatusOr<Value> Evaluator::EvalVectorSelector(const VectorSelector& sel, const Steps& steps, bool timestamps,
                                                    const VSeriesSink* sink) {
  int64_t min_ref, max_ref;
  RefRange(sel.at, sel.offset_ms, steps, &min_ref, &max_ref);
  const int64_t lookback = options_.lookback_ms;
  Value out;
  out.type = ValueType::kVector;
  // At each step, the newest sample in [ref - lookback, ref], unless it is
  // a stale marker.
  auto at_steps = [&](std::span<const Sample> samples, double* v, uint8_t* has) {
    bool any = false;
    size_t next = 0;  // the first sample after the step's time
    for (size_t i = 0; i < steps.n; ++i) {
      int64_t ref = RefTime(sel.at, sel.offset_ms, steps.At(i));
      while (next < samples.size() && samples[next].timestamp_ms <= ref) ++next;
      if (next == 0) continue;
      const Sample& x = samples[next - 1];
      if (x.timestamp_ms < ref - lookback || IsStaleMarker(x.value)) continue;
      v[i] = timestamps ? static_cast<double>(x.timestamp_ms) / 1000 : x.value;
      has[i] = 1;
      any = true;
    }
    return any;
  };
  const int64_t r = PickRollup(sel.at, sel.offset_ms, 0, steps);
  if (r == 0) {
    PROMQL_RETURN_IF_ERROR(
        MapSelectedSeries(sel, min_ref - lookback, max_ref, steps.n, !timestamps, at_steps, &out.vec, sink));
  } else {
    // Every step's time is a window edge: the newest sample at or before
    // it is the first of the window starting there (if at its start), or
    // the last of the nearest earlier window that has samples.
    PROMQL_ASSIGN_OR_RETURN(auto series, Select(sel));
    std::vector<Window> windows;
    std::vector<Sample> samples;
    const int64_t from = FloorToMultiple(min_ref - lookback, r);
    for (const Selected& x : series) {
      PROMQL_ASSIGN_OR_RETURN(bool usable, ReadWindows(x.id, r, from, max_ref, &windows));
      if (!usable) {
        PROMQL_RETURN_IF_ERROR(ReadRaw(x.id, min_ref - lookback, max_ref, &samples));
        if (!samples.empty()) {
          PROMQL_RETURN_IF_ERROR(AddStepSeries(x.labels, !timestamps, samples, steps.n, at_steps, &out.vec));
        }
        continue;
      }
      VSeries s = NewSeries(timestamps ? WithoutName(x.labels) : x.labels, steps.n);
      PROMQL_RETURN_IF_ERROR(Charge(steps.n));
      bool any = false;
      size_t next = 0;  // the first window starting at or after the step's time
      for (size_t i = 0; i < steps.n; ++i) {
        int64_t ref = RefTime(sel.at, sel.offset_ms, steps.At(i));
        while (next < windows.size() && windows[next].first < ref) ++next;
        int64_t ts;
        double v;
        if (next < windows.size() && windows[next].first == ref && windows[next].second.count > 0 &&
            windows[next].second.first_ts == ref) {
          ts = ref;
          v = windows[next].second.first;
        } else if (next > 0 && windows[next - 1].second.count > 0) {
          ts = windows[next - 1].second.last_ts;
          v = windows[next - 1].second.last;
        } else {
          continue;
        }
        if (ts < ref - lookback) continue;
        s.v[i] = timestamps ? static_cast<double>(ts) / 1000 : v;
        s.has[i] = 1;
        any = true;
      }
      if (any) out.vec.push_back(std::move(s));
    }
  }
  if (timestamps) PROMQL_RETURN_IF_ERROR(MergeSameLabels(out.vec));
  return out;
}

absl::StatusOr<std::vector<ResultSeries>> Evaluator::EvalRangeAt(const Expr& e, int64_t t) {
  Steps steps;
  steps.start = steps.end = t;
  const Expr& u = Unwrap(e);
  int64_t range = u.kind == NodeKind::kMatrixSelector ? u.As<MatrixSelector>().range_ms : u.As<Subquery>().range_ms;
  const AtModifier& at =
      u.kind == NodeKind::kMatrixSelector ? u.As<MatrixSelector>().selector->at : u.As<Subquery>().at;
  int64_t offset =
      u.kind == NodeKind::kMatrixSelector ? u.As<MatrixSelector>().selector->offset_ms : u.As<Subquery>().offset_ms;
  int64_t ref = RefTime(at, offset, t);
  std::vector<ResultSeries> out;
  PROMQL_RETURN_IF_ERROR(
      ForEachRangeSeries(e, steps, [&](const Labels& labels, std::span<const Sample> samples) -> absl::Status {
        ResultSeries r;
        r.labels = labels;
        for (const Sample& x : samples) {
          if (x.timestamp_ms >= ref - range && x.timestamp_ms <= ref) r.points.push_back(x);
        }
        if (!r.points.empty()) out.push_back(std::move(r));
        return absl::OkStatus();
      }));
  return out;
}

bool Evaluator::CanStream(const Expr& expr) {
  const Expr& e = Unwrap(expr);
  if (e.kind == NodeKind::kVectorSelector) return true;
  if (e.kind != NodeKind::kCall) return false;
  const Call& call = e.As<Call>();
  const RangeFunction* fn = LookupRangeFunction(call.func->name);
  if (fn == nullptr) return false;  // not a range function, or absent_over_time
  for (const auto& a : call.args) {
    if (a->type() != ValueType::kMatrix) continue;
    const Expr& arg = Unwrap(*a);
    if (arg.kind != NodeKind::kMatrixSelector) return false;
    if (fn->keep_name) return true;
    // Without __name__, series of several metrics could collide or change
    // order: only one metric's series stream.
    for (const model::Matcher& m : arg.As<MatrixSelector>().selector->matchers) {
      if (m.name() == model::kMetricNameLabel && m.op() == model::Matcher::Op::kEqual) return true;
    }
    return false;
  }
  return false;
}

absl::Status Evaluator::EvalStreaming(const Expr& expr, const Steps& steps, const VSeriesSink& sink) {
  const Expr& e = Unwrap(expr);
  absl::StatusOr<Value> rest =
      e.kind == NodeKind::kVectorSelector ? EvalVectorSelector(e.As<VectorSelector>(), steps, false, &sink)
                                          : EvalRangeFunction(e.As<Call>(), steps, &sink);
  if (!rest.ok()) return rest.status();
  // What did not stream (read through rollups) is whole now.
  SortByLabels(rest->vec);
  for (VSeries& s : rest->vec) PROMQL_RETURN_IF_ERROR(sink(std::move(s)));
  return absl::OkStatus();
}

absl::StatusOr<Value> Evaluator::Eval(const Expr& e, const Steps& steps) {
  PROMQL_RETURN_IF_ERROR(Poll());
  switch (e.kind) {
    case NodeKind::kNumberLiteral: {
      Value v;
      v.type = ValueType::kScalar;
      v.scalar.assign(steps.n, e.As<NumberLiteral>().value);
      return v;
    }
    case NodeKind::kStringLiteral: {
      Value v;
      v.type = ValueType::kString;
      v.str = e.As<StringLiteral>().value;
      return v;
    }
    case NodeKind::kVectorSelector:
      return EvalVectorSelector(e.As<VectorSelector>(), steps, false);
    case NodeKind::kParen:
      return Eval(*e.As<Paren>().expr, steps);
    case NodeKind::kUnary: {
      const auto& u = e.As<Unary>();
      PROMQL_ASSIGN_OR_RETURN(Value v, Eval(*u.expr, steps));
      if (!u.negate) return v;
      for (double& x : v.scalar) x = -x;
      for (VSeries& s : v.vec) {
        s.labels = WithoutName(std::move(s.labels));
        for (double& x : s.v) x = -x;
      }
      if (v.type == ValueType::kVector) PROMQL_RETURN_IF_ERROR(MergeSameLabels(v.vec));
      return v;
    }
    case NodeKind::kCall:
      return EvalCall(e.As<Call>(), steps);
    case NodeKind::kAggregate:
      return EvalAggregate(e.As<Aggregate>(), steps);
    case NodeKind::kBinary:
      return EvalBinary(e.As<Binary>(), steps);
    case NodeKind::kMatrixSelector:
    case NodeKind::kSubquery:
      break;
  }
  return absl::InternalError(fmt::format("cannot evaluate a {} here", ValueTypeName(e.type())));
}

absl::StatusOr<Value> Evaluator::EvalRangeFunction(const Call& call, const Steps& steps, const VSeriesSink* sink) {
  const std::string_view name = call.func->name;
  size_t m = 0;
  while (call.args[m]->type() != ValueType::kMatrix) ++m;
  const Expr& arg = Unwrap(*call.args[m]);
  int64_t range, offset;
  AtModifier at;
  if (arg.kind == NodeKind::kMatrixSelector) {
    range = arg.As<MatrixSelector>().range_ms;
    offset = arg.As<MatrixSelector>().selector->offset_ms;
    at = arg.As<MatrixSelector>().selector->at;
  } else {
    range = arg.As<Subquery>().range_ms;
    offset = arg.As<Subquery>().offset_ms;
    at = arg.As<Subquery>().at;
  }
  // The scalar arguments, at every step.
  std::vector<double> arg1(steps.n, 0), arg2(steps.n, 0);
  std::vector<const Expr*> scalars;
  for (size_t i = 0; i < call.args.size(); ++i) {
    if (i != m) scalars.push_back(call.args[i].get());
  }
  if (!scalars.empty()) {
    PROMQL_ASSIGN_OR_RETURN(Value v, Eval(*scalars[0], steps));
    arg1 = std::move(v.scalar);
  }
  if (scalars.size() > 1) {
    PROMQL_ASSIGN_OR_RETURN(Value v, Eval(*scalars[1], steps));
    arg2 = std::move(v.scalar);
  }
  if (name == "holt_winters") {
    for (size_t i = 0; i < steps.n; ++i) {
      if (!(arg1[i] > 0 && arg1[i] < 1)) {
        return ExecutionError(fmt::format("invalid smoothing factor. Expected: 0 < sf < 1, got: {:f}", arg1[i]));
      }
      if (!(arg2[i] > 0 && arg2[i] < 1)) {
        return ExecutionError(fmt::format("invalid trend factor. Expected: 0 < tf < 1, got: {:f}", arg2[i]));
      }
    }
  }

  Value out;
  out.type = ValueType::kVector;
  const bool absent = name == "absent_over_time";
  std::vector<uint8_t> present(absent ? steps.n : 0, 0);
  const RangeFunction* fn = absent ? nullptr : LookupRangeFunction(name);
  if (!absent && fn == nullptr) return absl::UnimplementedError(fmt::format("function {} is not supported", name));
  // The function over each step's window of samples (no stale markers).
  // Pure: it runs on the reader threads. absent_over_time marks the steps
  // whose window has samples; they are folded into `present` below.
  const bool keep_name = absent || fn->keep_name;
  auto range_steps = [&](std::span<const Sample> samples, double* v, uint8_t* has) {
    bool any = false;
    size_t lo = 0, hi = 0;
    for (size_t i = 0; i < steps.n; ++i) {
      int64_t ref = RefTime(at, offset, steps.At(i));
      while (hi < samples.size() && samples[hi].timestamp_ms <= ref) ++hi;
      while (lo < hi && samples[lo].timestamp_ms < ref - range) ++lo;
      if (absent) {
        if (hi > lo) has[i] = 1, any = true;
        continue;
      }
      RangeWindow w;
      w.samples = samples.subspan(lo, hi - lo);
      w.range_start = ref - range;
      w.range_end = ref;
      w.range_ms = range;
      w.eval_ms = at.IsSet() ? params_.start_ms : steps.At(i);
      w.arg = arg1[i];
      w.arg2 = arg2[i];
      if (fn->fn(w, &v[i])) {
        has[i] = 1;
        any = true;
      }
    }
    return any;
  };
  auto add_series = [&](const Labels& labels, std::span<const Sample> samples) {
    return AddStepSeries(labels, keep_name, samples, steps.n, range_steps, &out.vec);
  };
  const RollupFn rollup_fn = RollupFunction(name);
  const int64_t r =
      rollup_fn != RollupFn::kNone && arg.kind == NodeKind::kMatrixSelector ? PickRollup(at, offset, range, steps) : 0;
  if (r == 0 && arg.kind == NodeKind::kMatrixSelector) {
    int64_t min_ref, max_ref;
    RefRange(at, offset, steps, &min_ref, &max_ref);
    auto without_stale = [&](std::span<const Sample> samples, double* v, uint8_t* has) {
      if (std::none_of(samples.begin(), samples.end(), [](const Sample& x) { return IsStaleMarker(x.value); })) {
        return range_steps(samples, v, has);
      }
      thread_local std::vector<Sample> fresh;
      fresh.clear();
      for (const Sample& x : samples) {
        if (!IsStaleMarker(x.value)) fresh.push_back(x);
      }
      return !fresh.empty() && range_steps(fresh, v, has);
    };
    PROMQL_RETURN_IF_ERROR(MapSelectedSeries(*arg.As<MatrixSelector>().selector, min_ref - range, max_ref, steps.n,
                                             keep_name, without_stale, &out.vec, absent ? nullptr : sink));
  } else if (r == 0) {
    PROMQL_RETURN_IF_ERROR(ForEachRangeSeries(arg, steps, add_series));
  } else {
    // Every window [ref - range, ref] is whole rollup windows, plus the
    // sample exactly at ref when the next window starts with one.
    int64_t min_ref, max_ref;
    RefRange(at, offset, steps, &min_ref, &max_ref);
    const bool counter_fn = rollup_fn == RollupFn::kRate || rollup_fn == RollupFn::kIncrease;
    PROMQL_ASSIGN_OR_RETURN(auto series, Select(*arg.As<MatrixSelector>().selector));
    std::vector<Window> windows;
    std::vector<Sample> samples;
    for (const Selected& x : series) {
      // Rollups keep counter increases for counters only: rate() of
      // another type (or over a window with a NaN) reads raw samples.
      bool usable = !counter_fn || x.type == model::MetricType::kCounter;
      if (usable) {
        PROMQL_ASSIGN_OR_RETURN(usable, ReadWindows(x.id, r, min_ref - range, max_ref, &windows));
      }
      if (!usable || (counter_fn && !windows.empty() && !windows[0].second.counter)) {
        PROMQL_RETURN_IF_ERROR(ReadRaw(x.id, min_ref - range, max_ref, &samples));
        std::erase_if(samples, [](const Sample& v) { return IsStaleMarker(v.value); });
        if (!samples.empty()) PROMQL_RETURN_IF_ERROR(add_series(x.labels, samples));
        continue;
      }
      if (windows.empty()) continue;
      VSeries s;
      if (!absent) {
        s = NewSeries(fn->keep_name ? x.labels : WithoutName(x.labels), steps.n);
        PROMQL_RETURN_IF_ERROR(Charge(steps.n));
      }
      bool any = false;
      size_t lo = 0, hi = 0;
      for (size_t i = 0; i < steps.n; ++i) {
        int64_t ref = RefTime(at, offset, steps.At(i));
        while (hi < windows.size() && windows[hi].first < ref) ++hi;
        while (lo < hi && windows[lo].first < ref - range) ++lo;
        storage::Aggregate a;
        for (size_t k = lo; k < hi; ++k) a = storage::Aggregate::Merge(a, windows[k].second);
        if (hi < windows.size() && windows[hi].first == ref && windows[hi].second.count > 0 &&
            windows[hi].second.first_ts == ref) {
          const storage::Aggregate& next = windows[hi].second;
          storage::Aggregate edge;
          edge.count = 1;
          edge.sum = edge.min = edge.max = edge.first = edge.last = next.first;
          edge.first_ts = edge.last_ts = ref;
          edge.counter = next.counter;
          a = storage::Aggregate::Merge(a, edge);
        }
        if (a.count == 0) continue;
        if (absent) {
          present[i] = 1;
          continue;
        }
        double v;
        switch (rollup_fn) {
          case RollupFn::kCount:
            v = static_cast<double>(a.count);
            break;
          case RollupFn::kSum:
            v = a.sum;
            break;
          case RollupFn::kAvg:
            v = a.sum / static_cast<double>(a.count);
            break;
          case RollupFn::kMin:
            v = a.min;
            break;
          case RollupFn::kMax:
            v = a.max;
            break;
          case RollupFn::kLast:
            v = a.last;
            break;
          case RollupFn::kPresent:
            v = 1;
            break;
          default:
            if (a.count < 2) continue;
            v = Extrapolate(
                RateInput{counter_fn ? a.increase : a.last - a.first, a.first_ts, a.first, a.last_ts, a.count},
                ref - range, ref, range, counter_fn, rollup_fn == RollupFn::kRate);
        }
        s.v[i] = v;
        s.has[i] = 1;
        any = true;
      }
      if (any) out.vec.push_back(std::move(s));
    }
  }
  if (absent) {
    for (const VSeries& x : out.vec) {
      for (size_t i = 0; i < steps.n; ++i) present[i] |= x.has[i];
    }
    out.vec.clear();
    VSeries s = NewSeries(AbsentLabels(arg), steps.n);
    bool any = false;
    for (size_t i = 0; i < steps.n; ++i) {
      if (!present[i]) {
        s.v[i] = 1;
        s.has[i] = 1;
        any = true;
      }
    }
    if (any) out.vec.push_back(std::move(s));
    return out;
  }
  PROMQL_RETURN_IF_ERROR(MergeSameLabels(out.vec));
  return out;
}

absl::StatusOr<Value> Evaluator::EvalCall(const Call& call, const Steps& steps) {
  const std::string_view name = call.func->name;
  for (const ExprPtr& a : call.args) {
    if (a->type() == ValueType::kMatrix) return EvalRangeFunction(call, steps);
  }
  Value out;
  if (name == "time" || name == "pi") {
    out.type = ValueType::kScalar;
    out.scalar.resize(steps.n);
    for (size_t i = 0; i < steps.n; ++i) {
      out.scalar[i] = name == "pi" ? M_PI : static_cast<double>(steps.At(i)) / 1000;
    }
    return out;
  }
  if (name == "timestamp") {
    const Expr& arg = Unwrap(*call.args[0]);
    if (arg.kind == NodeKind::kVectorSelector) return EvalVectorSelector(arg.As<VectorSelector>(), steps, true);
  }
  // Date functions without an argument read the step's time.
  if (DateFn date = LookupDateFunction(name); date != nullptr && call.args.empty()) {
    out.type = ValueType::kVector;
    VSeries s = NewSeries({}, steps.n);
    for (size_t i = 0; i < steps.n; ++i) {
      s.v[i] = date(static_cast<double>(steps.At(i)) / 1000);
      s.has[i] = 1;
    }
    out.vec.push_back(std::move(s));
    return out;
  }

  std::vector<Value> args;
  for (const ExprPtr& a : call.args) {
    PROMQL_ASSIGN_OR_RETURN(Value v, Eval(*a, steps));
    args.push_back(std::move(v));
  }
  if (name == "vector") {
    out.type = ValueType::kVector;
    VSeries s = NewSeries({}, steps.n);
    s.v = args[0].scalar;
    s.has.assign(steps.n, 1);
    out.vec.push_back(std::move(s));
    return out;
  }
  if (name == "scalar") {
    out.type = ValueType::kScalar;
    out.scalar.assign(steps.n, std::nan(""));
    std::vector<uint32_t> count(steps.n, 0);
    for (const VSeries& s : args[0].vec) {
      for (size_t i = 0; i < steps.n; ++i) {
        if (!s.has[i]) continue;
        out.scalar[i] = ++count[i] == 1 ? s.v[i] : std::nan("");
      }
    }
    return out;
  }
  if (name == "absent") {
    out.type = ValueType::kVector;
    VSeries s = NewSeries(AbsentLabels(*call.args[0]), steps.n);
    bool any = false;
    for (size_t i = 0; i < steps.n; ++i) {
      bool present = std::any_of(args[0].vec.begin(), args[0].vec.end(), [&](const VSeries& x) { return x.has[i]; });
      if (!present) {
        s.v[i] = 1;
        s.has[i] = 1;
        any = true;
      }
    }
    if (any) out.vec.push_back(std::move(s));
    return out;
  }
  if (name == "histogram_quantile") {
    out.type = ValueType::kVector;
    // Buckets grouped by their labels without `le` (and the name).
    std::map<std::string, size_t> group_of;
    std::vector<Labels> group_labels;
    std::vector<std::pair<size_t, double>> bucket_of;  // group, upper bound; per input series
    for (const VSeries& s : args[1].vec) {
      std::string le(LabelValue(s.labels, "le"));
      char* end = nullptr;
      double bound = le.empty() ? 0 : std::strtod(le.c_str(), &end);
      if (le.empty() || end != le.c_str() + le.size()) {
        bucket_of.emplace_back(SIZE_MAX, 0);  // not a bucket: ignored, as Prometheus does
        continue;
      }
      Labels g = WithoutName(s.labels);
      SetLabel(g, "le", "");
      auto [it, fresh] = group_of.emplace(LabelsKey(g), group_labels.size());
      if (fresh) group_labels.push_back(std::move(g));
      bucket_of.emplace_back(it->second, bound);
    }
    std::vector<VSeries> groups;
    for (Labels& l : group_labels) groups.push_back(NewSeries(std::move(l), steps.n));
    std::vector<std::vector<Bucket>> buckets(groups.size());
    for (size_t i = 0; i < steps.n; ++i) {
      for (auto& b : buckets) b.clear();
      for (size_t k = 0; k < args[1].vec.size(); ++k) {
        const VSeries& s = args[1].vec[k];
        if (!s.has[i] || bucket_of[k].first == SIZE_MAX) continue;
        buckets[bucket_of[k].first].push_back(Bucket{bucket_of[k].second, s.v[i]});
      }
      for (size_t g = 0; g < groups.size(); ++g) {
        if (buckets[g].empty()) continue;
        groups[g].v[i] = BucketQuantile(args[0].scalar[i], buckets[g]);
        groups[g].has[i] = 1;
      }
    }
    for (VSeries& g : groups) {
      if (std::find(g.has.begin(), g.has.end(), 1) != g.has.end()) out.vec.push_back(std::move(g));
    }
    return out;
  }
  if (name == "label_replace" || name == "label_join") {
    out = std::move(args[0]);
    const std::string& dst = args[1].str;
    if (!model::IsValidLabelName(dst) && !(dst.size() > 2 && dst.compare(0, 2, "__") == 0)) {
      return ExecutionError(fmt::format("invalid destination label name in {}(): {}", name, dst));
    }
    if (name == "label_replace") {
      const std::string& replacement = args[2].str;
      const std::string& src = args[3].str;
      re2::RE2 re(fmt::format("^(?:{})$", args[4].str), re2::RE2::Quiet);
      if (!re.ok()) {
        return ExecutionError(fmt::format("invalid regular expression in label_replace(): {}", re.error()));
      }
      std::vector<re2::StringPiece> groups(re.NumberOfCapturingGroups() + 1);
      for (VSeries& s : out.vec) {
        std::string_view value = LabelValue(s.labels, src);
        if (!re.Match(re2::StringPiece(value.data(), value.size()), 0, value.size(), re2::RE2::ANCHOR_BOTH,
                      groups.data(), static_cast<int>(groups.size()))) {
          continue;
        }
        std::string result = Expand(replacement, re, groups);
        SetLabel(s.labels, dst, result);
      }
    } else {
      const std::string& sep = args[2].str;
      for (size_t k = 3; k < args.size(); ++k) {
        const std::string& src = args[k].str;
        if (!model::IsValidLabelName(src) && !(src.size() > 2 && src.compare(0, 2, "__") == 0)) {
          return ExecutionError(fmt::format("invalid source label name in label_join(): {}", src));
        }
      }
      for (VSeries& s : out.vec) {
        std::string joined;
        for (size_t k = 3; k < args.size(); ++k) {
          if (k > 3) joined += sep;
          joined += LabelValue(s.labels, args[k].str);
        }
        SetLabel(s.labels, dst, joined);
      }
    }
    PROMQL_RETURN_IF_ERROR(MergeSameLabels(out.vec));
    return out;
  }
  if (name == "sort" || name == "sort_desc") {
    out = std::move(args[0]);
    if (steps.n == 1) {
      // NaN first in both orders, as Prometheus' heaps order them.
      const bool desc = name == "sort_desc";
      std::stable_sort(out.vec.begin(), out.vec.end(), [desc](const VSeries& a, const VSeries& b) {
        if (std::isnan(a.v[0])) return !std::isnan(b.v[0]);
        if (std::isnan(b.v[0])) return false;
        return desc ? a.v[0] > b.v[0] : a.v[0] < b.v[0];
      });
    }
    return out;
  }

  // Functions of each value: math, rounding, clamping, dates, timestamp.
  out = std::move(args[0]);
  MathFn math = LookupMathFunction(name);
  DateFn date = LookupDateFunction(name);
  for (VSeries& s : out.vec) {
    s.labels = WithoutName(std::move(s.labels));
    for (size_t i = 0; i < steps.n; ++i) {
      if (!s.has[i]) continue;
      double& v = s.v[i];
      if (math != nullptr) {
        v = math(v);
      } else if (date != nullptr) {
        v = date(v);
      } else if (name == "timestamp") {
        v = static_cast<double>(steps.At(i)) / 1000;
      } else if (name == "round") {
        double to_nearest = args.size() > 1 ? args[1].scalar[i] : 1;
        double inverse = 1.0 / to_nearest;
        v = std::floor(v * inverse + 0.5) / inverse;
      } else if (name == "clamp") {
        double lo = args[1].scalar[i], hi = args[2].scalar[i];
        if (hi < lo) {
          s.has[i] = 0;  // an empty answer, as Prometheus gives
          continue;
        }
        v = GoMax(lo, GoMin(hi, v));
      } else if (name == "clamp_min") {
        v = GoMax(args[1].scalar[i], v);
      } else if (name == "clamp_max") {
        v = GoMin(args[1].scalar[i], v);
      } else {
        return absl::UnimplementedError(fmt::format("function {} is not supported", name));
      }
    }
  }
  std::erase_if(out.vec, [](const VSeries& s) { return std::find(s.has.begin(), s.has.end(), 1) == s.has.end(); });
  PROMQL_RETURN_IF_ERROR(MergeSameLabels(out.vec));
  return out;
}

}  // namespace sheaf::promql::internal
