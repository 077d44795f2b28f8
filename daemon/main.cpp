// cairnd entry point: flags, logging, signals. Everything else is in Daemon.
#include <csignal>
#include <cstdio>

#include "config.hpp"
#include "daemon.hpp"
#include "log.hpp"

int main(int argc, char** argv) {
  using namespace cairn::daemon;
  auto parsed = parse_args(argc, argv);
  if (!parsed) {
    std::fprintf(stderr, "cairnd: %s\n", parsed.error().c_str());
    return 2;
  }
  if (parsed.value().outcome == ParseOutcome::exit_ok) return 0;
  Config config = std::move(parsed.value().config);
  log_init(config.verbose);
  // A client that disconnects while we write its ack must cost us an EPIPE, not our life.
  std::signal(SIGPIPE, SIG_IGN);
  Daemon daemon(std::move(config));
  return daemon.run();
}
