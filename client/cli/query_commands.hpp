// query_commands.hpp — `cairn query` and `cairn report` (the questions asked of the log).
// Each returns the process exit code: 0 ok, 2 usage or connection errors.
#pragma once

#include <string>
#include <vector>

#include "../../protocol/message.hpp"
#include "../../protocol/result.hpp"

namespace cairn::cli {

int query_main(int argc, char** argv);
int report_main(int argc, char** argv);

// A positional FIELD=VALUE filter applied to q: a column name (type, actor, action,
// target, outcome, uid, pid, gid, comm) filters that column, any other name a `fields`
// key (a dotted path for nested maps). Values of one name are OR'ed, names AND'ed.
// Errors name the argument.
Result<Ok, std::string> add_match(proto::QuerySpec& q, const std::string& name, const std::string& value);

}  // namespace cairn::cli
