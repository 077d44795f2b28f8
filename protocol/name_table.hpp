// name_table.hpp — the wire names of an enum (ops, error codes, query columns): one
// table of {value, name} pairs per enum, looked up both ways by these two functions.
#pragma once

#include <array>
#include <optional>
#include <string_view>
#include <utility>

namespace cairn::proto {

template <typename E, size_t N>
std::string_view name_in(const std::array<std::pair<E, std::string_view>, N>& table, E value,
                         std::string_view unknown) {
  for (const auto& [v, n] : table)
    if (v == value) return n;
  return unknown;
}

template <typename E, size_t N>
std::optional<E> value_in(const std::array<std::pair<E, std::string_view>, N>& table, std::string_view name) {
  for (const auto& [v, n] : table)
    if (n == name) return v;
  return std::nullopt;
}

}  // namespace cairn::proto
