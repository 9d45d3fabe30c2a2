#include "model/exposition_parser.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/prom_format.h"
#include "model/labels.h"

namespace sheaf::model {
namespace {

using Format = ExpositionFormat;

// What a parse produced, in order: samples and errors.
struct Parsed {
  std::vector<ExpositionSample> samples;
  std::vector<std::string> errors;
};

// Feeds `input` in chunks of `chunk` bytes (0: all at once).
Parsed Parse(std::string_view input, Format format, size_t chunk = 0, ExpositionParserOptions options = {}) {
  ExpositionParser parser(format, options);
  Parsed out;
  ExpositionSample sample;
  auto drain = [&] {
    for (;;) {
      auto r = parser.Next(&sample);
      if (!r.ok()) {
        out.errors.push_back(std::string(r.status().message()));
        continue;
      }
      if (!*r) return;
      out.samples.push_back(sample);
    }
  };
  if (chunk == 0) chunk = input.size() + 1;
  for (size_t i = 0; i < input.size(); i += chunk) {
    parser.Feed(input.substr(i, chunk));
    drain();
  }
  parser.Close();
  drain();
  return out;
}

Parsed ParseProm(std::string_view input) { return Parse(input, Format::kPrometheusText); }
Parsed ParseOm(std::string_view input) { return Parse(input, Format::kOpenMetrics); }

std::string Text(const ExpositionSample& s) {
  std::string out = FormatLabels(s.labels);
  if (out.ends_with("{}")) out.resize(out.size() - 2);
  // fmt rather than `+`: GCC 12 -O3 sees a false -Wrestrict in string concatenation.
  return fmt::format("{} {}{}", out, s.value, s.timestamp_ms ? fmt::format(" @{}", *s.timestamp_ms) : std::string());
}

// Milliseconds 0-999 as the three digits after a decimal point.
std::string Ms3(int64_t ms) {
  std::string digits = std::to_string(ms);
  return std::string(3 - digits.size(), '0') + digits;
}

Labels L(std::vector<std::pair<std::string, std::string>> pairs) {
  Labels out;
  for (auto& [n, v] : pairs) out.push_back({n, v});
  return out;
}

TEST(ExpositionParserTest, PrometheusTextWithTimestamps) {
  auto r = ParseProm(
      "node_cpu_seconds_total{cpu=\"0\",host=\"web-1\",mode=\"idle\"} 1234.5 1700000000000\n"
      "node_load1{host=\"web-1\"} 0.25 1700000010000\n"
      "up 1\n");
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  ASSERT_EQ(r.samples.size(), 3u);
  EXPECT_EQ(r.samples[0].labels,
            L({{"__name__", "node_cpu_seconds_total"}, {"cpu", "0"}, {"host", "web-1"}, {"mode", "idle"}}));
  EXPECT_EQ(r.samples[0].value, 1234.5);
  EXPECT_EQ(r.samples[0].timestamp_ms, 1700000000000);
  EXPECT_EQ(r.samples[0].type, MetricType::kUnspecified);  // no # TYPE
  EXPECT_EQ(r.samples[0].line, 1);
  EXPECT_EQ(r.samples[1].name(), "node_load1");
  EXPECT_EQ(r.samples[1].timestamp_ms, 1700000010000);
  EXPECT_EQ(r.samples[2].labels, L({{"__name__", "up"}}));
  EXPECT_FALSE(r.samples[2].timestamp_ms.has_value());
  EXPECT_EQ(r.samples[2].line, 3);
}

TEST(ExpositionParserTest, PrometheusTextTypesAndHelp) {
  ExpositionParser p(Format::kPrometheusText);
  p.Feed(
      "# HELP http_requests_total The total number of HTTP requests.\n"
      "# TYPE http_requests_total counter\n"
      "http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n"
      "# HELP rpc_duration_seconds A summary of the RPC duration in seconds.\n"
      "# TYPE rpc_duration_seconds summary\n"
      "rpc_duration_seconds{quantile=\"0.5\"} 4773\n"
      "rpc_duration_seconds_sum 1.7560473e+07\n"
      "rpc_duration_seconds_count 2693\n"
      "# TYPE http_request_duration_seconds histogram\n"
      "http_request_duration_seconds_bucket{le=\"0.05\"} 24054\n"
      "http_request_duration_seconds_bucket{le=\"+Inf\"} 144320\n"
      "http_request_duration_seconds_sum 53423\n"
      "http_request_duration_seconds_count 144320\n"
      "# TYPE temperature gauge\n"
      "temperature -3.5\n"
      "# TYPE legacy untyped\n"
      "legacy 7\n"
      "stray_total 1\n");
  p.Close();
  struct Want {
    std::string name;
    FamilyType family;
    MetricType type;
  };
  std::vector<Want> want = {
      {"http_requests_total", FamilyType::kCounter, MetricType::kCounter},
      {"rpc_duration_seconds", FamilyType::kSummary, MetricType::kGauge},
      {"rpc_duration_seconds_sum", FamilyType::kSummary, MetricType::kGauge},
      {"rpc_duration_seconds_count", FamilyType::kSummary, MetricType::kCounter},
      {"http_request_duration_seconds_bucket", FamilyType::kHistogram, MetricType::kHistogram},
      {"http_request_duration_seconds_bucket", FamilyType::kHistogram, MetricType::kHistogram},
      {"http_request_duration_seconds_sum", FamilyType::kHistogram, MetricType::kHistogram},
      {"http_request_duration_seconds_count", FamilyType::kHistogram, MetricType::kHistogram},
      {"temperature", FamilyType::kGauge, MetricType::kGauge},
      {"legacy", FamilyType::kUnknown, MetricType::kUnspecified},
      {"stray_total", FamilyType::kUnknown, MetricType::kUnspecified},
  };
  ExpositionSample s;
  for (const Want& w : want) {
    auto r = p.Next(&s);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(*r);
    EXPECT_EQ(s.name(), w.name);
    EXPECT_EQ(s.family_type, w.family) << w.name;
    EXPECT_EQ(s.type, w.type) << w.name;
    EXPECT_FALSE(s.created);
    if (w.name == "rpc_duration_seconds") {
      EXPECT_EQ(p.family_help(), "A summary of the RPC duration in seconds.");
      EXPECT_EQ(s.labels, L({{"__name__", "rpc_duration_seconds"}, {"quantile", "0.5"}}));
    }
  }
  auto r = p.Next(&s);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  EXPECT_EQ(p.lines(), 18);
}

TEST(ExpositionParserTest, CounterDeclaredWithoutTotalCoversItsTotalSample) {
  auto r = ParseProm("# TYPE jobs counter\njobs_total 3\njobs 4\n");
  ASSERT_EQ(r.samples.size(), 2u);
  EXPECT_EQ(r.samples[0].type, MetricType::kCounter);
  EXPECT_EQ(r.samples[1].type, MetricType::kCounter);
}

TEST(ExpositionParserTest, SpecialValuesAndNumberForms) {
  auto r = ParseProm(
      "a NaN\nb +Inf\nc -Inf\nd Inf\ne -0\nf 1e-3\ng .5\nh 5.\ni 0x1p-2\nj 1.7976931348623157e308\n"
      "k +3\nl inf\nm nan\n");
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  ASSERT_EQ(r.samples.size(), 13u);
  EXPECT_TRUE(std::isnan(r.samples[0].value));
  EXPECT_EQ(r.samples[1].value, INFINITY);
  EXPECT_EQ(r.samples[2].value, -INFINITY);
  EXPECT_EQ(r.samples[3].value, INFINITY);
  EXPECT_TRUE(std::signbit(r.samples[4].value));
  EXPECT_EQ(r.samples[5].value, 0.001);
  EXPECT_EQ(r.samples[6].value, 0.5);
  EXPECT_EQ(r.samples[7].value, 5.0);
  EXPECT_EQ(r.samples[8].value, 0.25);
  EXPECT_EQ(r.samples[9].value, 1.7976931348623157e308);
  EXPECT_EQ(r.samples[10].value, 3);
  EXPECT_EQ(r.samples[11].value, INFINITY);
  EXPECT_TRUE(std::isnan(r.samples[12].value));

  for (const char* bad : {"x 1e400\n", "x +NaN\n", "x 1,5\n", "x 0x1p3\n# EOF\n", "x --1\n", "x 1e\n", "x .\n"}) {
    const bool om = std::string_view(bad).find("0x") != std::string_view::npos;
    auto e = om ? ParseOm(bad) : ParseProm(bad);
    EXPECT_TRUE(e.samples.empty()) << bad;
    ASSERT_EQ(e.errors.size(), 1u) << bad;
    EXPECT_NE(e.errors[0].find("is not a number"), std::string::npos) << e.errors[0];
  }
}

TEST(ExpositionParserTest, LabelValueEscapes) {
  auto r = ParseProm(R"(m{a="back\\slash",b="quote\"d",c="new\nline",d="tab\t kept",e="ünïcødé"} 1)"
                     "\n");
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  ASSERT_EQ(r.samples.size(), 1u);
  EXPECT_EQ(r.samples[0].labels, L({{"__name__", "m"},
                                    {"a", "back\\slash"},
                                    {"b", "quote\"d"},
                                    {"c", "new\nline"},
                                    {"d", "tab\\t kept"},  // Prometheus keeps unknown escapes as written
                                    {"e", "ünïcødé"}}));
  // OpenMetrics allows only the three escapes.
  auto om = ParseOm("m{d=\"tab\\t\"} 1\n# EOF\n");
  ASSERT_EQ(om.errors.size(), 1u);
  EXPECT_EQ(om.errors[0],
            "line 1, column 9: invalid escape in the value of label \"d\"; OpenMetrics allows \\\\, \\\" and \\n");
  // Invalid UTF-8 is a format error (both formats are UTF-8).
  auto bad = ParseProm("m{a=\"\xff\xfe\"} 1\n");
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_NE(bad.errors[0].find("not valid UTF-8"), std::string::npos);
}

TEST(ExpositionParserTest, PrometheusTextIsLenientAboutBlanks) {
  auto r = ParseProm(
      "\n   \n# a free comment\n#TYPE m gauge\n"
      "  m { a = \"1\" , b=\"2\", }\t 3   1000  \r\n"
      "m{} 4\n");
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  ASSERT_EQ(r.samples.size(), 2u);
  EXPECT_EQ(r.samples[0].labels, L({{"__name__", "m"}, {"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(r.samples[0].value, 3);
  EXPECT_EQ(r.samples[0].timestamp_ms, 1000);
  EXPECT_EQ(r.samples[0].type, MetricType::kGauge);
  EXPECT_EQ(r.samples[1].labels, L({{"__name__", "m"}}));
}

TEST(ExpositionParserTest, PrometheusTextErrorsNameLineAndColumn) {
  struct Case {
    std::string input;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"m{a=\"1", "line 1, column 5: the value of label \"a\" has no closing '\"'"},
      {"m{a=\"1\" 2", "line 1, column 9: expected ',' or '}' after the value of label \"a\", found '2'"},
      {"m{a 1} 2", "line 1, column 5: expected '=' after the label name \"a\", found '1'"},
      {"m{a=1} 2", "line 1, column 5: expected '\"' to start the value of label \"a\", found '1'"},
      {"m{1a=\"x\"} 2", "line 1, column 3: expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) or '}', found '1'"},
      {"9m 1", "line 1, column 1: expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or '#', found '9'"},
      {"m", "line 1, column 2: expected a space before the value, found the end of the line"},
      {"m abc", "line 1, column 3: \"abc\" is not a number (expected e.g. 1.5, 2e-3, NaN, +Inf or -Inf)"},
      {"m 1 1.5",
       "line 1, column 5: \"1.5\" is not a timestamp (Prometheus text: integer milliseconds since the "
       "epoch, e.g. 1700000000123)"},
      {"m 1 99999999999999999999",
       "line 1, column 5: \"99999999999999999999\" is not a timestamp (Prometheus "
       "text: integer milliseconds since the epoch, e.g. 1700000000123)"},
      {"m 1 2 3", "line 1, column 7: unexpected '3' after the timestamp"},
      {"# TYPE m bogus",
       "line 1, column 10: unknown metric type \"bogus\"; expected counter, gauge, histogram, "
       "summary or untyped"},
      {"# TYPE m gaugehistogram",
       "line 1, column 10: unknown metric type \"gaugehistogram\"; expected counter, "
       "gauge, histogram, summary or untyped"},
      {"# TYPE", "line 1, column 7: expected a metric name after # TYPE"},
      {"# TYPE 1m gauge", "line 1, column 8: expected a metric name after # TYPE, found '1'"},
      {"m\x01 1", "line 1, column 2: expected a space before the value, found byte 0x01"},
  };
  for (const Case& c : cases) {
    auto r = ParseProm("ok 1\n" + c.input + "\nok 2\n");
    ASSERT_EQ(r.errors.size(), 1u) << c.input;
    std::string want = c.error;
    want.replace(0, 6, "line 2");  // the case is the second line
    EXPECT_EQ(r.errors[0], want) << c.input;
    // The lines around the bad one are read.
    ASSERT_EQ(r.samples.size(), 2u) << c.input;
    EXPECT_EQ(r.samples[1].line, 3);
  }
}

TEST(ExpositionParserTest, MetadataRules) {
  auto second_type = ParseProm("# TYPE m gauge\n# TYPE m counter\nm 1\n");
  ASSERT_EQ(second_type.errors.size(), 1u);
  EXPECT_EQ(second_type.errors[0], "line 2, column 1: a second # TYPE line for \"m\"");
  auto late_type = ParseProm("m 1\n# TYPE m counter\n");
  ASSERT_EQ(late_type.errors.size(), 1u);
  EXPECT_EQ(late_type.errors[0],
            "line 2, column 1: # TYPE for \"m\" comes after its samples; it must come before them");
  auto second_help = ParseProm("# HELP m one\n# HELP m two\n");
  ASSERT_EQ(second_help.errors.size(), 1u);
  // HELP escapes: \\ and \n; others stay in Prometheus text.
  ExpositionParser p(Format::kPrometheusText);
  ExpositionSample s;
  ASSERT_FALSE(*p.ParseLine(R"(# HELP m a\\b\nc\"d)", &s));
  EXPECT_EQ(p.family_help(), "a\\b\nc\\\"d");
}

TEST(ExpositionParserTest, OpenMetricsCountersCreatedAndSeconds) {
  auto r = ParseOm(
      "# TYPE acme_http_router_request_seconds summary\n"
      "# UNIT acme_http_router_request_seconds seconds\n"
      "# HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.\n"
      "acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32 1520879607.789\n"
      "acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0 1520879607.789\n"
      "acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0\n"
      "# TYPE go_goroutines gauge\n"
      "go_goroutines 69 1.5e9\n"
      "# TYPE process_cpu_seconds counter\n"
      "# UNIT process_cpu_seconds seconds\n"
      "process_cpu_seconds_total 4.20072246e+06 1520879607.0004\n"
      "process_cpu_seconds_created 1520879000 1520879607.0005\n"
      "# TYPE foo histogram\n"
      "foo_bucket{le=\"0.01\"} 0 -1.5\n"
      "foo_bucket{le=\"+Inf\"} 17 0.0015 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n"
      "foo_count 17 1520879607 # {} 1 1520879607.1\n"
      "foo_sum 324789.3\n"
      "# TYPE cache_state stateset\n"
      "cache_state{cache_state=\"hit\"} 1\n"
      "# TYPE build info\n"
      "build_info{version=\"1.2\"} 1\n"
      "# TYPE queue gaugehistogram\n"
      "queue_gcount 3\n"
      "# TYPE other unknown\n"
      "other 1\n"
      "# EOF\n");
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  std::vector<std::string> got;
  for (const auto& s : r.samples) {
    got.push_back(Text(s) + " " + std::string(FamilyTypeName(s.family_type)) + " " +
                  std::to_string(static_cast<int>(s.type)) + (s.created ? " created" : ""));
  }
  const std::vector<std::string> want = {
      "acme_http_router_request_seconds_sum{path=\"/api/v1\", method=\"GET\"} 9036.32 @1520879607789 summary 2",
      "acme_http_router_request_seconds_count{path=\"/api/v1\", method=\"GET\"} 807283 @1520879607789 summary 1",
      "acme_http_router_request_seconds_created{path=\"/api/v1\", method=\"GET\"} 1605281325 summary 2 created",
      "go_goroutines 69 @1500000000000 gauge 2",
      "process_cpu_seconds_total 4200722.46 @1520879607000 counter 1",
      "process_cpu_seconds_created 1520879000 @1520879607001 counter 2 created",
      "foo_bucket{le=\"0.01\"} 0 @-1500 histogram 3",
      "foo_bucket{le=\"+Inf\"} 17 @2 histogram 3",
      "foo_count 17 @1520879607000 histogram 3",
      "foo_sum 324789.3 histogram 3",
      "cache_state{cache_state=\"hit\"} 1 stateset 2",
      "build_info{version=\"1.2\"} 1 info 2",
      "queue_gcount 3 gaugehistogram 2",
      "other 1 unknown 0",
  };
  EXPECT_EQ(got, want);
}

TEST(ExpositionParserTest, OpenMetricsTimestampsConvertExactly) {
  struct Case {
    const char* text;
    int64_t ms;
  };
  for (const Case& c : std::vector<Case>{{"1520879607.789", 1520879607789},
                                         {"1520879607.7894", 1520879607789},
                                         {"1520879607.7895", 1520879607790},
                                         {"0.0005", 1},
                                         {"0.0004", 0},
                                         {"-0.0015", -2},
                                         {"1.700000000123e9", 1700000000123},
                                         {"17e8", 1700000000000},
                                         {"0001700000000", 1700000000000},
                                         {".5", 500},
                                         {"9223372036854775.807", 9223372036854775807}}) {
    auto r = ParseOm(std::string("m 1 ") + c.text + "\n# EOF\n");
    ASSERT_TRUE(r.errors.empty()) << c.text << ": " << r.errors[0];
    ASSERT_EQ(r.samples.size(), 1u);
    EXPECT_EQ(r.samples[0].timestamp_ms, c.ms) << c.text;
  }
  for (const char* bad : {"9223372036854775.808", "1e20", "NaN", "+Inf", "1.2.3", "e5", "1e", "1e1001", "0x10"}) {
    auto r = ParseOm(std::string("m 1 ") + bad + "\n# EOF\n");
    ASSERT_EQ(r.errors.size(), 1u) << bad;
    EXPECT_NE(r.errors[0].find("is not a timestamp"), std::string::npos) << r.errors[0];
  }
}

TEST(ExpositionParserTest, OpenMetricsStrictness) {
  struct Case {
    std::string input;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"m 1\n\nm 2\n# EOF\n", "line 2, column 1: empty line (OpenMetrics allows none)"},
      {"# just a comment\n# EOF\n",
       "line 1, column 3: \"# just\": OpenMetrics allows only # TYPE, # HELP, # UNIT and a final # EOF"},
      {"#TYPE m gauge\n# EOF\n",
       "line 1, column 2: expected \"# TYPE\", \"# HELP\", \"# UNIT\" or \"# EOF\" (OpenMetrics allows no other "
       "comments)"},
      {"m  1\n# EOF\n", "line 1, column 3: \"\" is not a number (expected e.g. 1.5, 2e-3, NaN, +Inf or -Inf)"},
      {"m{a=\"1\",} 1\n# EOF\n", "line 1, column 9: a ',' before '}' (OpenMetrics allows no trailing comma)"},
      {"m{a = \"1\"} 1\n# EOF\n", "line 1, column 4: expected '=' after the label name \"a\", found ' '"},
      {"# TYPE m untyped\n# EOF\n",
       "line 1, column 10: unknown metric type \"untyped\"; expected counter, gauge, histogram, gaugehistogram, "
       "stateset, info, summary or unknown"},
      {"# UNIT m_bytes seconds\n# EOF\n",
       "line 1, column 16: the unit \"seconds\" must be the suffix of the metric name \"m_bytes\" (\"..._seconds\")"},
      {"m 1 2 # x\n# EOF\n",
       "line 1, column 7: expected an exemplar (\"# {...} value\") or the end of the line, found '#'"},
      {"m 1 # {a=\"b\"}\n# EOF\n",
       "line 1, column 14: expected a space before the exemplar's value, found the end "
       "of the line"},
      {"m 1\n# EOF\nm 2\n", "line 3: text after \"# EOF\", which must be the last line; the rest is ignored"},
      {"m 1\n",
       "line 1: the input ends without \"# EOF\", which OpenMetrics requires as its last line (is the "
       "input truncated?)"},
      {"m 1 1000\r\n# EOF\n",
       "line 1, column 5: \"1000\r\" is not a timestamp (OpenMetrics: seconds since the "
       "epoch, e.g. 1700000000.123)"},
      {"# TYPE m gauge\nm 1\n# HELP m late\n# EOF\n", "line 3, column 1: # HELP for \"m\" comes after its samples"},
  };
  for (const Case& c : cases) {
    auto r = ParseOm(c.input);
    ASSERT_EQ(r.errors.size(), 1u) << c.input;
    EXPECT_EQ(r.errors[0], c.error) << c.input;
  }
  // Only the first line after # EOF is reported; a final newline after it is fine.
  auto r = ParseOm("m 1\n# EOF\nx\ny\n");
  EXPECT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.samples.size(), 1u);
  EXPECT_TRUE(ParseOm("m 1\n# EOF").errors.empty());
}

TEST(ExpositionParserTest, ChunkBoundariesDoNotMatter) {
  const std::string input =
      "# TYPE a counter\na_total{x=\"1\\\"}\"} 1 1.5\n# HELP b with \\\\ and \\n\nb 2 2\nc{y=\"ü\"} NaN 3.25\n# EOF\n";
  const Parsed whole = ParseOm(input);
  ASSERT_TRUE(whole.errors.empty()) << whole.errors[0];
  ASSERT_EQ(whole.samples.size(), 3u);
  for (size_t chunk = 1; chunk < input.size(); ++chunk) {
    const Parsed p = Parse(input, Format::kOpenMetrics, chunk);
    ASSERT_TRUE(p.errors.empty()) << chunk;
    ASSERT_EQ(p.samples.size(), whole.samples.size()) << chunk;
    for (size_t i = 0; i < p.samples.size(); ++i) EXPECT_EQ(Text(p.samples[i]), Text(whole.samples[i])) << chunk;
  }
}

TEST(ExpositionParserTest, OverlongLineIsSkippedWithBoundedMemory) {
  ExpositionParserOptions options;
  options.max_line_bytes = 64;
  ExpositionParser p(Format::kPrometheusText, options);
  ExpositionSample s;
  p.Feed("a 1\nb{x=\"");
  auto r = p.Next(&s);
  ASSERT_TRUE(r.ok() && *r);
  EXPECT_EQ(s.name(), "a");
  // 10 MB of one line, fed in pieces: one error, then the parser waits for
  // the line's end without keeping it.
  const std::string piece(4096, 'z');
  int errors = 0;
  for (int i = 0; i < 2560; ++i) {
    p.Feed(piece);
    for (;;) {
      auto n = p.Next(&s);
      if (!n.ok()) {
        ++errors;
        EXPECT_EQ(n.status().message().substr(0, 30), "line 2: longer than 64 bytes (");
        continue;
      }
      ASSERT_FALSE(*n);
      break;
    }
  }
  EXPECT_EQ(errors, 1);
  p.Feed("\"} 1\nc 3\n");
  p.Close();
  r = p.Next(&s);
  ASSERT_TRUE(r.ok() && *r) << r.status();
  EXPECT_EQ(s.name(), "c");
  EXPECT_EQ(s.line, 3);
  r = p.Next(&s);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  EXPECT_EQ(p.bytes_consumed(), 4u + 5 + 10 * 1024 * 1024 + 5 + 4);
}

TEST(ExpositionParserTest, DetectsTheFormat) {
  EXPECT_EQ(DetectExpositionFormat("m{a=\"1\"} 1 1700000000000\n"), Format::kPrometheusText);
  EXPECT_EQ(DetectExpositionFormat("m{a=\"1\"} 1 1700000000\n"), Format::kOpenMetrics);
  EXPECT_EQ(DetectExpositionFormat("m{a=\"x y} 2\"} 1 1700000000.5\n"), Format::kOpenMetrics);
  EXPECT_EQ(DetectExpositionFormat("# TYPE m counter\nm_total 1\n# EOF\n"), Format::kOpenMetrics);
  EXPECT_EQ(DetectExpositionFormat("# TYPE m_seconds gauge\n# UNIT m_seconds seconds\n"), Format::kOpenMetrics);
  EXPECT_EQ(DetectExpositionFormat("# TYPE m unknown\n"), Format::kOpenMetrics);
  EXPECT_EQ(DetectExpositionFormat("# TYPE m untyped\nm 1\n"), Format::kPrometheusText);
  EXPECT_EQ(DetectExpositionFormat("m 1 # {t=\"1\"} 2\n"), Format::kOpenMetrics);
  EXPECT_EQ(DetectExpositionFormat("up 1\nup 2 1700000000000"), Format::kPrometheusText);
  EXPECT_EQ(DetectExpositionFormat("m 1 1700000000"), Format::kOpenMetrics);  // one line, no newline
  EXPECT_EQ(DetectExpositionFormat(""), Format::kPrometheusText);
}

// Random series written with the library's own quoting and number format
// read back exactly, in both formats.
TEST(ExpositionParserTest, RandomRoundTrip) {
  std::mt19937_64 rng(7);
  const std::vector<std::string> alphabet = {"a", "Z", "0", " ", "\\", "\"", "\n", "{", "}", ",", "=", "#", "é", "日"};
  for (Format format : {Format::kPrometheusText, Format::kOpenMetrics}) {
    std::string input;
    std::vector<ExpositionSample> want;
    for (int i = 0; i < 2000; ++i) {
      ExpositionSample s;
      s.labels.push_back({"__name__", fmt::format("metric_{}", rng() % 50)});
      const int labels = static_cast<int>(rng() % 4);
      for (int k = 0; k < labels; ++k) {
        std::string value;
        for (int c = static_cast<int>(rng() % 8); c > 0; --c) value += alphabet[rng() % alphabet.size()];
        s.labels.push_back({fmt::format("l{}", k), value});
      }
      switch (rng() % 6) {
        case 0:
          s.value = std::numeric_limits<double>::infinity() * (rng() % 2 ? 1 : -1);
          break;
        case 1:
          s.value = static_cast<double>(static_cast<int64_t>(rng() % 2000000) - 1000000);
          break;
        default: {
          uint64_t bits = rng();
          std::memcpy(&s.value, &bits, sizeof(bits));
          if (std::isnan(s.value)) s.value = 0.125;
        }
      }
      if (rng() % 4 != 0) s.timestamp_ms = static_cast<int64_t>(rng() % 4'000'000'000'000ull);
      std::string label_text;
      for (size_t k = 1; k < s.labels.size(); ++k) {
        label_text += fmt::format("{}{}={}", k > 1 ? "," : "", s.labels[k].name, QuoteLabelValue(s.labels[k].value));
      }
      std::string ts;
      if (s.timestamp_ms) {
        ts = format == Format::kOpenMetrics ? fmt::format(" {}.{}", *s.timestamp_ms / 1000, Ms3(*s.timestamp_ms % 1000))
                                            : fmt::format(" {}", *s.timestamp_ms);
      }
      input += fmt::format("{}{{{}}} {}{}\n", s.labels[0].value, label_text, FormatPromFloat(s.value), ts);
      want.push_back(std::move(s));
    }
    if (format == Format::kOpenMetrics) input += "# EOF\n";
    const Parsed got = Parse(input, format, 1000);
    ASSERT_TRUE(got.errors.empty()) << got.errors[0];
    ASSERT_EQ(got.samples.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got.samples[i].labels, want[i].labels) << i;
      EXPECT_EQ(std::memcmp(&got.samples[i].value, &want[i].value, sizeof(double)), 0)
          << i << ": " << got.samples[i].value << " vs " << want[i].value;
      EXPECT_EQ(got.samples[i].timestamp_ms, want[i].timestamp_ms) << i;
    }
  }
}

// Mutated inputs (bytes flipped, inserted, deleted, lines cut) never crash
// the parser, every error names its line, the chunking never changes the
// result, and the parser always reaches the end.
TEST(ExpositionParserTest, MutationsNeverCrashAndChunkingIsIrrelevant) {
  const std::string seeds[] = {
      "# HELP a_total Requests.\n# TYPE a_total counter\na_total{m=\"GET\",c=\"200\"} 1027 1395066363000\n"
      "# TYPE h histogram\nh_bucket{le=\"0.5\"} 3\nh_bucket{le=\"+Inf\"} 4\nh_sum 1.5\nh_count 4\nx NaN\n",
      "# TYPE r summary\n# UNIT r seconds\nr{quantile=\"0.9\"} 1.5 1520879607.789\nr_sum 9 1.5e9\nr_count 3\n"
      "r_created 1.6e9\n# TYPE c counter\nc_total{a=\"\\\\\\\"\\n\"} 1 # {t=\"x\"} 2 3\n# EOF\n",
  };
  const std::string junk = "{}\"\\=, #\n\t\r.e+-0123456789abcIEOFNaT\xff\xc3";
  std::mt19937_64 rng(42);
  for (int round = 0; round < 20000; ++round) {
    std::string input = seeds[round % 2];
    for (int m = static_cast<int>(rng() % 6) + 1; m > 0; --m) {
      const size_t at = input.empty() ? 0 : rng() % input.size();
      switch (rng() % 4) {
        case 0:
          if (!input.empty()) input[at] = junk[rng() % junk.size()];
          break;
        case 1:
          input.insert(at, 1, junk[rng() % junk.size()]);
          break;
        case 2:
          if (!input.empty()) input.erase(at, 1 + rng() % 5);
          break;
        case 3:
          input.resize(at);
          break;
      }
    }
    for (Format format : {Format::kPrometheusText, Format::kOpenMetrics}) {
      const Parsed whole = Parse(input, format);
      const Parsed pieces = Parse(input, format, 1 + rng() % 7);
      ASSERT_EQ(whole.errors, pieces.errors) << input;
      ASSERT_EQ(whole.samples.size(), pieces.samples.size()) << input;
      for (size_t i = 0; i < whole.samples.size(); ++i) {
        ASSERT_EQ(Text(whole.samples[i]), Text(pieces.samples[i]));
        for (const Label& l : whole.samples[i].labels) ASSERT_TRUE(IsValidUtf8(l.value));
      }
      for (const auto& e : whole.errors) ASSERT_EQ(e.substr(0, 5), "line ") << e;
    }
  }
}

}  // namespace
}  // namespace sheaf::model
