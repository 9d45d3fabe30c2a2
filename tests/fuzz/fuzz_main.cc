// libFuzzer's entry point for one target: compiled once per executable with
// -DSHEAF_FUZZ_ENTRY=<the body's function> (tests/fuzz/meson.build).
#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return SHEAF_FUZZ_ENTRY(data, size); }
