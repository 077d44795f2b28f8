#include "errors.hpp"

#include "name_table.hpp"

#include <array>
#include <utility>

namespace cairn::proto {
namespace {

constexpr std::array<std::pair<ErrorCode, std::string_view>, 15> kNames{{
    {ErrorCode::frame_too_large, "frame_too_large"},
    {ErrorCode::malformed, "malformed"},
    {ErrorCode::invalid_field, "invalid_field"},
    {ErrorCode::unsupported_version, "unsupported_version"},
    {ErrorCode::unknown_op, "unknown_op"},
    {ErrorCode::storage_failed, "storage_failed"},
    {ErrorCode::shutting_down, "shutting_down"},
    {ErrorCode::overloaded, "overloaded"},
    {ErrorCode::permission_denied, "permission_denied"},
    {ErrorCode::internal, "internal"},
    {ErrorCode::events_lost, "events_lost"},
    {ErrorCode::idem_conflict, "idem_conflict"},
    {ErrorCode::rate_limited, "rate_limited"},
    {ErrorCode::storage_full, "storage_full"},
    {ErrorCode::subscribed, "subscribed"},
}};

}  // namespace

std::string_view error_code_name(ErrorCode code) { return name_in(kNames, code, "internal"); }

std::optional<ErrorCode> error_code_from_name(std::string_view name) { return value_in(kNames, name); }

}  // namespace cairn::proto
