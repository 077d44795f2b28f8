// commands.hpp — the cairn CLI subcommands. Each returns the process exit code:
// 0 ok, 1 refused events or a broken chain, 2 usage or connection errors.
#pragma once

namespace cairn::cli {

int cmd_send(int argc, char** argv);
int cmd_verify(int argc, char** argv);
int cmd_stats(int argc, char** argv);
int cmd_ping(int argc, char** argv);

extern const char* const kUsage;

}  // namespace cairn::cli
