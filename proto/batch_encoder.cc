#include "proto/batch_encoder.h"

namespace sheaf {

std::string SeriesKey(const LabelPairs& labels) {
  std::string key;
  for (const auto& [name, value] : labels) {
    key += name;
    key += '\xff';  // 0xFF never occurs in UTF-8
    key += value;
    key += '\xfe';
  }
  return key;
}

void StreamEncoder::BeginBatch(const std::string& agent_id, uint64_t sequence, v1::MetricBatch* out) {
  out->Clear();
  out->set_agent_id(agent_id);
  out->set_sequence(sequence);
  batch_ = out;
}

void StreamEncoder::Add(std::string_view key, const LabelPairs& labels, v1::MetricType type,
                        const int64_t* timestamps_ms, const double* values, size_t n) {
  auto [it, inserted] = refs_.try_emplace(std::string(key), static_cast<uint32_t>(refs_.size() + 1));
  if (inserted) {
    v1::SeriesDefinition* def = batch_->add_definitions();
    def->set_ref(it->second);
    def->set_type(type);
    for (const auto& [name, value] : labels) {
      v1::Label* l = def->add_labels();
      l->set_name(name);
      l->set_value(value);
    }
  }
  v1::SeriesSamples* s = batch_->add_samples();
  s->set_ref(it->second);
  s->mutable_timestamps_ms()->Add(timestamps_ms, timestamps_ms + n);
  s->mutable_values()->Add(values, values + n);
}

void StreamEncoder::Reset() { refs_.clear(); }

}  // namespace sheaf
