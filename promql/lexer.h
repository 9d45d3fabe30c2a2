// The PromQL lexer: the whole query into tokens, up front. Keywords are
// identifiers here; the parser decides (case-insensitively) what they mean,
// so a label may be called `by` or `offset` as in Prometheus.
#ifndef SHEAF_PROMQL_LEXER_H_
#define SHEAF_PROMQL_LEXER_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "promql/ast.h"

namespace sheaf::promql {

enum class TokenKind {
  kEof,
  kIdentifier,  // [a-zA-Z_:][a-zA-Z0-9_:]*, keywords included
  kNumber,      // 1, 1.5, .5, 1e3, 0x1f (Inf and NaN are identifiers)
  kString,      // "...", '...', `...`; value holds the unquoted text
  kDuration,    // 5m, 1h30m, 500ms
  kLParen,
  kRParen,
  kLBrace,
  kRBrace,
  kLBracket,
  kRBracket,
  kComma,
  kColon,
  kAt,
  kAssign,    // =
  kEqlRegex,  // =~
  kNeqRegex,  // !~
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMod,
  kPow,
  kEql,
  kNeq,
  kLss,
  kLte,
  kGtr,
  kGte,
};

struct Token {
  TokenKind kind = TokenKind::kEof;
  Position pos;
  std::string_view text;  // as written (a view into the query)
  std::string value;      // kString: the unquoted value
  double number = 0;      // kNumber: the value
};

// "end of input", `identifier "foo"`, `number "1"`, `")"`: for messages.
std::string DescribeToken(const Token& token);

// The position of byte `offset` of `input` (1-based line and column).
Position PositionAt(std::string_view input, int offset);

// INVALID_ARGUMENT "LINE:COL: message" on a lexical error. The last token
// is always kEof.
absl::StatusOr<std::vector<Token>> Lex(std::string_view input);

}  // namespace sheaf::promql

#endif  // SHEAF_PROMQL_LEXER_H_
