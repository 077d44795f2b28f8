// cairn — the command-line tool of the cairn audit log.
#include <cstdio>
#include <cstring>

#include "cairn_config.h"
#include "commands.hpp"
#include "query_commands.hpp"
#include "seal_commands.hpp"

int main(int argc, char** argv) {
  using namespace cairn::cli;
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (std::strcmp(argv[1], "--version") == 0) {
    std::printf("cairn %s\n", CAIRN_VERSION);
    return 0;
  }
  const char* cmd = argv[1];
  if (std::strcmp(cmd, "send") == 0) return cmd_send(argc, argv);
  if (std::strcmp(cmd, "query") == 0) return query_main(argc, argv);
  if (std::strcmp(cmd, "report") == 0) return report_main(argc, argv);
  if (std::strcmp(cmd, "verify") == 0) return cmd_verify(argc, argv);
  if (std::strcmp(cmd, "stats") == 0) return cmd_stats(argc, argv);
  if (std::strcmp(cmd, "ping") == 0) return cmd_ping(argc, argv);
  if (std::strcmp(cmd, "key") == 0) return cmd_key(argc, argv);
  if (std::strcmp(cmd, "checkpoint") == 0) return cmd_checkpoint(argc, argv);
  if (std::strcmp(cmd, "prove") == 0) return cmd_prove(argc, argv);
  std::fprintf(stderr, "cairn: unknown command '%s'\n%s", cmd, kUsage);
  return 2;
}
