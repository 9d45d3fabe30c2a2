#include "common/json_writer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "common/prom_format.h"

namespace sheaf {
namespace {

TEST(JsonWriterTest, NestsAndSeparates) {
  JsonWriter w;
  w.BeginObject();
  w.Key("status");
  w.String("success");
  w.Key("data");
  w.BeginArray();
  w.Int(-1);
  w.Uint(2);
  w.Bool(true);
  w.Null();
  w.BeginObject();
  w.EndObject();
  w.EndArray();
  w.EndObject();
  EXPECT_EQ(w.str(), R"({"status":"success","data":[-1,2,true,null,{}]})");
}

TEST(JsonWriterTest, EscapesAndReplacesInvalidUtf8) {
  EXPECT_EQ(JsonWriter::Quote("a\"b\\c\nd\x01"), R"("a\"b\\c\nd\u0001")");
  EXPECT_EQ(JsonWriter::Quote("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
  EXPECT_EQ(JsonWriter::Quote("x\xff"), "\"x\xEF\xBF\xBD\"");
}

TEST(JsonWriterTest, NonFiniteNumbersAreStrings) {
  JsonWriter w;
  w.BeginArray();
  w.Double(0.1);
  w.Double(std::numeric_limits<double>::infinity());
  w.Double(-std::numeric_limits<double>::infinity());
  w.Double(std::nan(""));
  w.EndArray();
  EXPECT_EQ(w.str(), R"([0.1,"+Inf","-Inf","NaN"])");
}

TEST(PromFormatTest, ShortestRoundTrip) {
  EXPECT_EQ(FormatPromFloat(1), "1");
  EXPECT_EQ(FormatPromFloat(0.1), "0.1");
  EXPECT_EQ(FormatPromFloat(1e21), "1e+21");
  EXPECT_EQ(FormatPromFloat(-2.5), "-2.5");
  // Go's 'g' with the shortest precision: an exponent below 1e-4 and from 1e6 on.
  EXPECT_EQ(FormatPromFloat(140), "140");
  EXPECT_EQ(FormatPromFloat(100000), "100000");
  EXPECT_EQ(FormatPromFloat(1234567), "1.234567e+06");
  EXPECT_EQ(FormatPromFloat(0.0001), "0.0001");
  EXPECT_EQ(FormatPromFloat(0.00001), "1e-05");
  EXPECT_EQ(FormatPromFloat(-1.5e-300), "-1.5e-300");
  // Go's 'f': never an exponent.
  EXPECT_EQ(FormatPromApiFloat(1234567), "1234567");
  EXPECT_EQ(FormatPromApiFloat(1e21), "1000000000000000000000");
  EXPECT_EQ(FormatPromApiFloat(0.00001), "0.00001");
  EXPECT_EQ(FormatPromApiFloat(-0.0), "-0");
  EXPECT_EQ(FormatPromApiFloat(-INFINITY), "-Inf");
  double third = 1.0 / 3;
  EXPECT_EQ(std::strtod(FormatPromFloat(third).c_str(), nullptr), third);
  EXPECT_EQ(FormatPromFloat(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatPromFloat(std::nan("")), "NaN");
}

}  // namespace
}  // namespace sheaf
