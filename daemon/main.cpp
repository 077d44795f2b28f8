// cairnd entry point: flags, logging, signals. Everything else is in Daemon.
#include <csignal>
#include <cstdio>
#include <string>

#include "config.hpp"
#include "daemon.hpp"
#include "log.hpp"
#include "cairn_config.h"

namespace {

// One line per problem, each with our name, as parse_args reports them.
void print_errors(const std::string& errors) {
  size_t start = 0;
  while (start <= errors.size()) {
    size_t nl = errors.find('\n', start);
    if (nl == std::string::npos) nl = errors.size();
    std::fprintf(stderr, "cairnd: %s\n", errors.substr(start, nl - start).c_str());
    start = nl + 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace cairn::daemon;
  auto parsed = parse_args(argc, argv);
  bool checking = false;
  for (int i = 1; i < argc; ++i) checking = checking || std::string(argv[i]) == "--check-config";
  if (!parsed) {
    print_errors(parsed.error());
    // --check-config: 1 is "the configuration is invalid"; 2 stays a usage error.
    return checking ? 1 : 2;
  }
  if (parsed.value().outcome == ParseOutcome::exit_ok) return 0;
  if (parsed.value().outcome == ParseOutcome::check_config) {
    const std::string& file = parsed.value().config_file;
    std::printf("# cairnd %s: settings in effect (%s)\n", CAIRN_VERSION,
                file.empty() ? "no config file" : file.c_str());
    for (const auto& [key, value] : config_values(parsed.value().config)) {
      // An empty list is a value (`query-uids =`); an empty path or name is "default".
      bool list = key == "query-uids" || key == "query-gids" || key == "critical-types";
      if (value.empty() && !list) std::printf("# %s = (unset: the default applies)\n", key.c_str());
      else std::printf("%s = %s\n", key.c_str(), value.c_str());
    }
    std::fprintf(stderr, "cairnd: configuration OK\n");
    return 0;
  }
  Config config = std::move(parsed.value().config);
  log_init(config.verbose);
  // A client that disconnects while we write its ack must cost us an EPIPE, not our life.
  std::signal(SIGPIPE, SIG_IGN);
  Daemon daemon(std::move(config), std::move(parsed.value().args));
  return daemon.run();
}
