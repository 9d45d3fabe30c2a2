// See remote_decode.h.
#include "daemon/remote_decode.h"

#include <fmt/format.h>
#include <google/protobuf/io/coded_stream.h>

namespace sheaf::daemon::remote {

using google::protobuf::internal::WireFormatLite;

bool ForEachField(std::string_view message, const FieldFn& field, std::string* error) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(message.data()),
                                            static_cast<int>(message.size()));
  while (true) {
    const int at = in.CurrentPosition();
    const uint32_t tag = in.ReadTag();
    if (tag == 0) {
      if (at == static_cast<int>(message.size())) return true;
      *error = fmt::format("bad field tag at byte {}", at);
      return false;
    }
    const int number = WireFormatLite::GetTagFieldNumber(tag);
    const WireFormatLite::WireType type = WireFormatLite::GetTagWireType(tag);
    std::string_view bytes;
    if (type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      uint32_t length = 0;
      if (!in.ReadVarint32(&length) || length > message.size() - static_cast<size_t>(in.CurrentPosition())) {
        *error = fmt::format("field {} at byte {} runs past the end", number, at);
        return false;
      }
      bytes = message.substr(static_cast<size_t>(in.CurrentPosition()), length);
      in.Skip(static_cast<int>(length));
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      *error = fmt::format("field {} at byte {} runs past the end", number, at);
      return false;
    }
    if (!field(number, type, bytes)) return false;
  }
}

bool ForEachSeries(std::string_view message, const std::function<bool(std::string_view)>& series,
                   std::string* error) {
  std::string why;
  const bool ok = ForEachField(
      message,
      [&](int number, WireFormatLite::WireType type, std::string_view bytes) {
        return number != kWriteRequestTimeseries || type != WireFormatLite::WIRETYPE_LENGTH_DELIMITED ||
               series(bytes);
      },
      &why);
  if (!ok && error->empty()) *error = "not a protobuf WriteRequest: " + why;
  return ok;
}

absl::StatusOr<std::vector<model::Matcher>> ToMatchers(const prompb::Query& query, int index) {
  std::vector<model::Matcher> out;
  out.reserve(static_cast<size_t>(query.matchers_size()));
  for (const prompb::LabelMatcher& m : query.matchers()) {
    model::Matcher::Op op;
    switch (m.type()) {
      case prompb::LabelMatcher::EQ:
        op = model::Matcher::Op::kEqual;
        break;
      case prompb::LabelMatcher::NEQ:
        op = model::Matcher::Op::kNotEqual;
        break;
      case prompb::LabelMatcher::RE:
        op = model::Matcher::Op::kRegex;
        break;
      case prompb::LabelMatcher::NRE:
        op = model::Matcher::Op::kNotRegex;
        break;
      default:
        return absl::InvalidArgumentError(fmt::format(
            "query #{}: matcher on \"{}\" has type {}; known are 0 (EQ), 1 (NEQ), 2 (RE) and 3 (NRE)", index,
            m.name(), static_cast<int>(m.type())));
    }
    auto matcher = model::Matcher::Create(op, m.name(), m.value());
    if (!matcher.ok()) {
      return absl::InvalidArgumentError(fmt::format("query #{}: {}", index, std::string(matcher.status().message())));
    }
    out.push_back(*std::move(matcher));
  }
  return out;
}

}  // namespace sheaf::daemon::remote
