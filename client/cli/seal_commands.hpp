// seal_commands.hpp — the CLI's view of seals: verify, key, checkpoint, prove.
#pragma once

#include <functional>
#include <string>

#include "../../protocol/message.hpp"
#include "args.hpp"

namespace cairn::cli {

// Asks a running cairnd to verify with the given msgpack args map; fills `rep`.
// Returns an exit code (0 when a report was read).
using OnlineVerify = std::function<int(const Args& args, const std::string& req_args, proto::VerifyReport& rep)>;

int verify_main(int argc, char** argv, const OnlineVerify& online);
int cmd_key(int argc, char** argv);
int cmd_checkpoint(int argc, char** argv);
int cmd_prove(int argc, char** argv);

}  // namespace cairn::cli
