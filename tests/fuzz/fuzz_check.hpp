// fuzz_check.hpp — how a fuzz target says "this input broke a promise".
//
// A broken property aborts with a sentence naming it; libFuzzer (or the replay driver)
// turns the abort into a crash report and keeps the input as an artifact. Sanitizer
// findings need nothing from us: they abort by themselves.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

namespace cairn::fuzz {

[[noreturn]] inline void check_failed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "\nfuzz property broken at %s:%d: %s\n", file, line, what);
  std::abort();
}

inline std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline std::string_view view_of(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace cairn::fuzz

#define FUZZ_CHECK(cond, what)                                               \
  do {                                                                       \
    if (!(cond)) ::cairn::fuzz::check_failed((what), __FILE__, __LINE__);    \
  } while (0)
