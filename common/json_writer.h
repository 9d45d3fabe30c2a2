// A small streaming JSON writer: appends to a string, tracks commas, escapes
// strings (invalid UTF-8 bytes become U+FFFD, so the output is always valid
// JSON), and writes non-finite numbers as strings ("NaN", "+Inf") the way
// the Prometheus HTTP API does. Not a DOM: output is built in one pass.
//
//   JsonWriter w;
//   w.BeginObject(); w.Key("status"); w.String("success"); w.EndObject();
//   w.str() == R"({"status":"success"})"
#ifndef SHEAF_COMMON_JSON_WRITER_H_
#define SHEAF_COMMON_JSON_WRITER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sheaf {

class JsonWriter {
 public:
  void BeginObject();
  void EndObject();
  void BeginArray();
  void EndArray();
  void Key(std::string_view key);  // REQUIRES: inside an object
  void String(std::string_view s);
  void Int(int64_t v);
  void Uint(uint64_t v);
  void Double(double v);  // shortest round-trip form; non-finite as a string
  void Bool(bool v);
  void Null();

  const std::string& str() const { return out_; }
  std::string Take() { return std::move(out_); }

  // `"s"` with JSON escapes.
  static std::string Quote(std::string_view s);

 private:
  void Separate();  // a comma before every element but the first
  std::string out_;
  std::vector<bool> first_;  // per open container: nothing written in it yet
  bool after_key_ = false;
};

}  // namespace sheaf

#endif  // SHEAF_COMMON_JSON_WRITER_H_
