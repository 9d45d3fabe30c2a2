#include "promql/lexer.h"

#include <charconv>
#include <cstdlib>
#include <utility>

#include "fmt/format.h"
#include "model/labels.h"

namespace sheaf::promql {

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsAlphaNumeric(char c) { return IsAlpha(c) || IsDigit(c); }
bool IsHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
int HexValue(char c) {
  if (IsDigit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

// A duration as the lexer sees it: ([0-9]+(ms|s|m|h|d|w|y))+ (the order of
// the units is the parser's business).
bool LooksLikeDuration(std::string_view s) {
  size_t i = 0;
  if (s.empty()) return false;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && IsDigit(s[i])) ++i;
    if (i == start || i == s.size()) return false;
    if (s.substr(i, 2) == "ms") {
      i += 2;
    } else if (std::string_view("smhdwy").find(s[i]) != std::string_view::npos) {
      ++i;
    } else {
      return false;
    }
  }
  return true;
}

std::string DescribeChar(unsigned char c) {
  if (c >= 0x20 && c < 0x7f) return fmt::format("U+{:04X} '{}'", c, static_cast<char>(c));
  return fmt::format("U+{:04X}", c);
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

class Lexer {
 public:
  explicit Lexer(std::string_view in) : in_(in) {}

  absl::StatusOr<std::vector<Token>> Run() {
    std::vector<Token> out;
    while (true) {
      SkipSpaceAndComments();
      Token t;
      t.pos = Advance(pos_);
      if (pos_ >= in_.size()) {
        t.kind = TokenKind::kEof;
        t.text = in_.substr(in_.size());
        out.push_back(std::move(t));
        return out;
      }
      size_t start = pos_;
      absl::Status s = Next(t);
      if (!s.ok()) return s;
      t.text = in_.substr(start, pos_ - start);
      out.push_back(std::move(t));
    }
  }

 private:
  // The position of `offset`, counting on from the last one (linear time).
  Position Advance(size_t offset) {
    for (size_t i = static_cast<size_t>(cur_.offset); i < offset; ++i) {
      if (in_[i] == '\n') {
        ++cur_.line;
        cur_.column = 1;
      } else {
        ++cur_.column;
      }
    }
    cur_.offset = static_cast<int>(offset);
    return cur_;
  }

  absl::Status Error(size_t at, std::string_view message) const {
    Position p = PositionAt(in_, static_cast<int>(at));
    std::string text = fmt::format("{}:{}: ", p.line, p.column);
    text += message;
    return absl::InvalidArgumentError(text);
  }

  void SkipSpaceAndComments() {
    while (pos_ < in_.size()) {
      char c = in_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < in_.size() && in_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  char Peek(size_t ahead = 0) const { return pos_ + ahead < in_.size() ? in_[pos_ + ahead] : '\0'; }

  absl::Status Next(Token& t) {
    size_t start = pos_;
    char c = in_[pos_];
    auto single = [&](TokenKind k) {
      ++pos_;
      t.kind = k;
      return absl::OkStatus();
    };
    auto two = [&](TokenKind k) {
      pos_ += 2;
      t.kind = k;
      return absl::OkStatus();
    };
    switch (c) {
      case '(':
        return single(TokenKind::kLParen);
      case ')':
        return single(TokenKind::kRParen);
      case '{':
        return single(TokenKind::kLBrace);
      case '}':
        return single(TokenKind::kRBrace);
      case '[':
        bracket_open_ = true;
        return single(TokenKind::kLBracket);
      case ']':
        bracket_open_ = false;
        return single(TokenKind::kRBracket);
      case ',':
        return single(TokenKind::kComma);
      case ':':
        // A colon starts an identifier only where a name can start; in
        // `[5m:1m]` it separates. Names starting with ':' are rare enough
        // that Prometheus lexes ':' inside brackets as COLON too.
        if (bracket_open_) return single(TokenKind::kColon);
        break;
      case '@':
        return single(TokenKind::kAt);
      case '+':
        return single(TokenKind::kAdd);
      case '-':
        return single(TokenKind::kSub);
      case '*':
        return single(TokenKind::kMul);
      case '/':
        return single(TokenKind::kDiv);
      case '%':
        return single(TokenKind::kMod);
      case '^':
        return single(TokenKind::kPow);
      case '=':
        if (Peek(1) == '=') return two(TokenKind::kEql);
        if (Peek(1) == '~') return two(TokenKind::kEqlRegex);
        return single(TokenKind::kAssign);
      case '!':
        if (Peek(1) == '=') return two(TokenKind::kNeq);
        if (Peek(1) == '~') return two(TokenKind::kNeqRegex);
        return Error(start, "unexpected character after \"!\"");
      case '<':
        if (Peek(1) == '=') return two(TokenKind::kLte);
        return single(TokenKind::kLss);
      case '>':
        if (Peek(1) == '=') return two(TokenKind::kGte);
        return single(TokenKind::kGtr);
      case '"':
      case '\'':
      case '`':
        t.kind = TokenKind::kString;
        return String(t);
      default:
        break;
    }
    if (IsDigit(c) || (c == '.' && IsDigit(Peek(1)))) return NumberOrDuration(t);
    if (IsAlpha(c) || c == ':') {
      while (pos_ < in_.size() && (IsAlphaNumeric(in_[pos_]) || in_[pos_] == ':')) ++pos_;
      t.kind = TokenKind::kIdentifier;
      return absl::OkStatus();
    }
    std::string msg = "unexpected character: ";
    msg += DescribeChar(static_cast<unsigned char>(c));
    return Error(start, msg);
  }

  absl::Status NumberOrDuration(Token& t) {
    size_t start = pos_;
    bool hex = false;
    if (Peek() == '0' && (Peek(1) == 'x' || Peek(1) == 'X')) {
      hex = true;
      pos_ += 2;
      while (IsHex(Peek())) ++pos_;
    } else {
      while (IsDigit(Peek())) ++pos_;
      if (Peek() == '.') {
        ++pos_;
        while (IsDigit(Peek())) ++pos_;
      }
      if (Peek() == 'e' || Peek() == 'E') {
        // An exponent only if digits follow (else maybe a duration or junk).
        size_t save = pos_;
        ++pos_;
        if (Peek() == '+' || Peek() == '-') ++pos_;
        if (IsDigit(Peek())) {
          while (IsDigit(Peek())) ++pos_;
        } else {
          pos_ = save;
        }
      }
    }
    if (!IsAlphaNumeric(Peek()) && Peek() != '.') {
      std::string_view text = in_.substr(start, pos_ - start);
      t.kind = TokenKind::kNumber;
      if (hex) {
        if (text.size() == 2) return Error(start, fmt::format("bad number syntax: \"{}\"", text));
        double v = 0;
        for (char h : text.substr(2)) v = v * 16 + HexValue(h);
        t.number = v;
        return absl::OkStatus();
      }
      std::string copy(text);
      char* end = nullptr;
      t.number = std::strtod(copy.c_str(), &end);
      if (end != copy.c_str() + copy.size()) return Error(start, fmt::format("bad number syntax: \"{}\"", text));
      return absl::OkStatus();
    }
    pos_ = start;
    while (pos_ < in_.size() && (IsAlphaNumeric(in_[pos_]) || in_[pos_] == '.')) ++pos_;
    std::string_view text = in_.substr(start, pos_ - start);
    if (LooksLikeDuration(text)) {
      t.kind = TokenKind::kDuration;
      return absl::OkStatus();
    }
    return Error(start, fmt::format("bad number or duration syntax: \"{}\"", text));
  }

  absl::Status String(Token& t) {
    size_t start = pos_;
    char quote = in_[pos_++];
    std::string value;
    while (true) {
      if (pos_ >= in_.size()) return Error(start, "unterminated quoted string");
      char c = in_[pos_];
      if (c == quote) {
        ++pos_;
        break;
      }
      if (c == '\n' && quote != '`') return Error(start, "unterminated quoted string");
      if (c != '\\' || quote == '`') {
        value += c;
        ++pos_;
        continue;
      }
      size_t esc = pos_++;
      if (pos_ >= in_.size()) return Error(start, "unterminated quoted string");
      char e = in_[pos_++];
      switch (e) {
        case 'a':
          value += '\a';
          continue;
        case 'b':
          value += '\b';
          continue;
        case 'f':
          value += '\f';
          continue;
        case 'n':
          value += '\n';
          continue;
        case 'r':
          value += '\r';
          continue;
        case 't':
          value += '\t';
          continue;
        case 'v':
          value += '\v';
          continue;
        case '\\':
          value += '\\';
          continue;
        default:
          break;
      }
      if (e == quote) {
        value += e;
        continue;
      }
      int digits = 0, base = 0;
      uint32_t max = 0;
      if (e >= '0' && e <= '7') {
        --pos_;
        digits = 3, base = 8, max = 255;
      } else if (e == 'x') {
        digits = 2, base = 16, max = 255;
      } else if (e == 'u') {
        digits = 4, base = 16, max = 0x10ffff;
      } else if (e == 'U') {
        digits = 8, base = 16, max = 0x10ffff;
      } else {
        std::string msg = "unknown escape sequence ";
        msg += DescribeChar(static_cast<unsigned char>(e));
        return Error(esc, msg);
      }
      uint64_t v = 0;
      for (int i = 0; i < digits; ++i) {
        if (pos_ >= in_.size()) return Error(start, "unterminated quoted string");
        char d = in_[pos_];
        bool ok = base == 8 ? (d >= '0' && d <= '7') : IsHex(d);
        if (!ok) {
          if (d == quote || (d == '\n' && quote != '`')) {
            return Error(esc, "unexpected end of escape sequence");
          }
          std::string msg = "illegal character ";
          msg += DescribeChar(static_cast<unsigned char>(d));
          msg += " in escape sequence";
          return Error(pos_, msg);
        }
        v = v * base + static_cast<uint64_t>(HexValue(d));
        ++pos_;
      }
      if (v > max || (digits >= 4 && v >= 0xd800 && v < 0xe000)) {
        return Error(esc, "escape sequence is an invalid Unicode code point");
      }
      if (digits >= 4) {
        AppendUtf8(value, static_cast<uint32_t>(v));
      } else {
        value += static_cast<char>(v);
      }
    }
    if (!model::IsValidUtf8(in_.substr(start, pos_ - start))) return Error(start, "invalid UTF-8 rune");
    t.value = std::move(value);
    return absl::OkStatus();
  }

  std::string_view in_;
  size_t pos_ = 0;
  bool bracket_open_ = false;
  Position cur_;
};

}  // namespace

Position PositionAt(std::string_view input, int offset) {
  Position p;
  p.offset = offset;
  for (int i = 0; i < offset && i < static_cast<int>(input.size()); ++i) {
    if (input[i] == '\n') {
      ++p.line;
      p.column = 1;
    } else {
      ++p.column;
    }
  }
  return p;
}

std::string DescribeToken(const Token& token) {
  switch (token.kind) {
    case TokenKind::kEof:
      return "end of input";
    case TokenKind::kIdentifier:
      return fmt::format("identifier \"{}\"", token.text);
    case TokenKind::kNumber:
      return fmt::format("number \"{}\"", token.text);
    case TokenKind::kDuration:
      return fmt::format("duration \"{}\"", token.text);
    case TokenKind::kString:
      return fmt::format("string {}", QuoteString(token.value));
    default:
      return fmt::format("\"{}\"", token.text);
  }
}

absl::StatusOr<std::vector<Token>> Lex(std::string_view input) { return Lexer(input).Run(); }

}  // namespace sheaf::promql
