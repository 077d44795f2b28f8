// args.hpp — a small, strict option parser for the cairn CLI subcommands.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "../../protocol/result.hpp"

namespace cairn::cli {

struct OptionSpec {
  const char* name;   // long name without "--"
  bool takes_value;
  char short_name = 0;
  bool repeat = false;  // may be given more than once (all values kept, in order);
                        // otherwise a second use is an error naming the option
};

struct Args {
  std::map<std::string, std::string> opts;  // flag options map to "1"; the last value
  std::map<std::string, std::vector<std::string>> all;  // every value, in order
  std::vector<std::string> positional;
  bool has(const std::string& k) const { return opts.count(k) != 0; }
  std::string get(const std::string& k, const std::string& def = {}) const {
    auto it = opts.find(k);
    return it == opts.end() ? def : it->second;
  }
};

// Parses argv[first..argc). Accepts --name value, --name=value, -x value and -xVALUE.
// Unknown options, a missing value, and a second use of an option that is not `repeat`
// are errors naming the option.
Result<Args, std::string> parse_args(int argc, char** argv, int first,
                                     const std::vector<OptionSpec>& spec);

}  // namespace cairn::cli
