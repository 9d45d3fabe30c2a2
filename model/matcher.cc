#include "model/matcher.h"

#include <re2/re2.h>

#include "model/labels.h"

namespace sheaf::model {

absl::StatusOr<Matcher> Matcher::Create(Op op, std::string name, std::string value) {
  std::shared_ptr<const re2::RE2> re;
  if (op == Op::kRegex || op == Op::kNotRegex) {
    RE2::Options options;
    options.set_log_errors(false);
    // Anchored like Prometheus: the whole value must match.
    re = std::make_shared<const re2::RE2>("^(?:" + value + ")$", options);
    if (!re->ok()) {
      return absl::InvalidArgumentError("invalid regex for label \"" + name + "\": " + re->error());
    }
  }
  return Matcher(op, std::move(name), std::move(value), std::move(re));
}

bool Matcher::Matches(std::string_view value) const {
  switch (op_) {
    case Op::kEqual:
      return value == value_;
    case Op::kNotEqual:
      return value != value_;
    case Op::kRegex:
      return RE2::FullMatch(value, *re_);
    case Op::kNotRegex:
      return !RE2::FullMatch(value, *re_);
  }
  return false;
}

std::string Matcher::ToString() const {
  static constexpr const char* kOps[] = {"=", "!=", "=~", "!~"};
  return name_ + kOps[static_cast<int>(op_)] + QuoteLabelValue(value_);
}

bool MatchesAll(const std::vector<Matcher>& matchers, const Labels& labels) {
  for (const Matcher& m : matchers) {
    std::string_view value;
    for (const Label& l : labels) {
      if (l.name == m.name()) {
        value = l.value;
        break;
      }
    }
    if (!m.Matches(value)) return false;
  }
  return true;
}

namespace {

class SelectorParser {
 public:
  explicit SelectorParser(std::string_view s) : s_(s) {}

  absl::StatusOr<std::vector<Matcher>> Parse() {
    std::vector<Matcher> out;
    SkipSpace();
    std::string name = Identifier(/*metric=*/true);
    if (!name.empty()) {
      auto m = Matcher::Create(Matcher::Op::kEqual, kMetricNameLabel, name);
      if (!m.ok()) return m.status();
      out.push_back(*std::move(m));
    }
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == '{') {
      ++pos_;
      SkipSpace();
      while (pos_ < s_.size() && s_[pos_] != '}') {
        std::string label = Identifier(/*metric=*/false);
        if (label.empty()) return Error("expected a label name");
        SkipSpace();
        Matcher::Op op;
        if (Consume("=~"))
          op = Matcher::Op::kRegex;
        else if (Consume("!~"))
          op = Matcher::Op::kNotRegex;
        else if (Consume("!="))
          op = Matcher::Op::kNotEqual;
        else if (Consume("="))
          op = Matcher::Op::kEqual;
        else
          return Error("expected one of = != =~ !~ after \"" + label + "\"");
        SkipSpace();
        auto value = QuotedString();
        if (!value.ok()) return value.status();
        auto m = Matcher::Create(op, label, *std::move(value));
        if (!m.ok()) return m.status();
        out.push_back(*std::move(m));
        SkipSpace();
        if (Consume(",")) {
          SkipSpace();
          continue;
        }
        if (pos_ < s_.size() && s_[pos_] != '}') return Error("expected ',' or '}'");
      }
      if (!Consume("}")) return Error("missing closing '}'");
    }
    SkipSpace();
    if (pos_ != s_.size()) return Error("unexpected text");
    if (out.empty()) return Error("empty selector");
    return out;
  }

 private:
  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError("selector \"" + std::string(s_) + "\": " + what + " at position " +
                                      std::to_string(pos_));
  }
  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n')) ++pos_;
  }
  bool Consume(std::string_view token) {
    if (s_.substr(pos_, token.size()) != token) return false;
    pos_ += token.size();
    return true;
  }
  std::string Identifier(bool metric) {
    size_t start = pos_;
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (metric && c == ':') ||
                (pos_ > start && c >= '0' && c <= '9');
      if (!ok) break;
      ++pos_;
    }
    return std::string(s_.substr(start, pos_ - start));
  }
  absl::StatusOr<std::string> QuotedString() {
    if (pos_ >= s_.size() || (s_[pos_] != '"' && s_[pos_] != '\'' && s_[pos_] != '`')) {
      return Error("expected a quoted value");
    }
    char quote = s_[pos_++];
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != quote) {
      char c = s_[pos_++];
      if (c == '\\' && quote != '`' && pos_ < s_.size()) {
        char e = s_[pos_++];
        switch (e) {
          case 'n':
            out += '\n';
            break;
          case 't':
            out += '\t';
            break;
          case '\\':
          case '"':
          case '\'':
            out += e;
            break;
          default:
            out += '\\';
            out += e;  // regex escapes such as \d pass through
        }
        continue;
      }
      out += c;
    }
    if (pos_ >= s_.size()) return Error("unterminated string");
    ++pos_;
    return out;
  }

  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<Matcher>> ParseSelector(std::string_view selector) {
  return SelectorParser(selector).Parse();
}

}  // namespace sheaf::model
