#include "args.hpp"

#include <string_view>

namespace cairn::cli {

Result<Args, std::string> parse_args(int argc, char** argv, int first,
                                     const std::vector<OptionSpec>& spec) {
  Args out;
  for (int i = first; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") {
      for (++i; i < argc; ++i) out.positional.emplace_back(argv[i]);
      break;
    }
    const OptionSpec* found = nullptr;
    std::string value;
    bool inline_value = false;
    if (a.starts_with("--")) {
      std::string_view name = a.substr(2);
      size_t eq = name.find('=');
      if (eq != std::string_view::npos) {
        value = std::string(name.substr(eq + 1));
        name = name.substr(0, eq);
        inline_value = true;
      }
      for (const auto& s : spec)
        if (name == s.name) found = &s;
      if (found == nullptr) return Err{"unknown option --" + std::string(name)};
    } else if (a.size() >= 2 && a[0] == '-' && a[1] != '-' &&
               !(a[1] >= '0' && a[1] <= '9')) {  // "-1h" is a value, never an option
      for (const auto& s : spec)
        if (s.short_name == a[1]) found = &s;
      if (found == nullptr) return Err{"unknown option " + std::string(a.substr(0, 2))};
      if (a.size() > 2) {
        if (!found->takes_value) return Err{"unknown option " + std::string(a) + " (-" + a[1] + " takes no value)"};
        value = std::string(a.substr(2));
        inline_value = true;
      }
    } else {
      out.positional.emplace_back(a);
      continue;
    }
    if (out.all.count(found->name) && !found->repeat)
      return Err{"--" + std::string(found->name) + " given twice (it takes one value)"};
    if (found->takes_value) {
      if (!inline_value) {
        if (i + 1 >= argc) return Err{"--" + std::string(found->name) + " needs a value"};
        value = argv[++i];
      }
      out.opts[found->name] = value;
      out.all[found->name].push_back(value);
    } else {
      if (inline_value) return Err{"--" + std::string(found->name) + " takes no value"};
      out.opts[found->name] = "1";
      out.all[found->name].push_back("1");
    }
  }
  return out;
}

}  // namespace cairn::cli
