// json.hpp — strict JSON for `cairn send --stdin`, and msgpack -> JSON for output.
#pragma once

#include <msgpack.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../protocol/result.hpp"

namespace cairn::cli {

struct Json {
  enum class Kind { null, boolean, integer, number, string, array, object };
  Kind kind = Kind::null;
  bool b = false;
  int64_t i = 0;
  double d = 0;
  std::string s;
  std::vector<Json> items;                          // array
  std::vector<std::pair<std::string, Json>> members;  // object, in input order

  // Declared here, defined (defaulted) in json.cpp where Json is complete. Left
  // implicit, clang 14 with libstdc++ 12 in C++20 mode instantiates
  // std::pair<std::string, Json>'s traits for the implicit members while Json is still
  // incomplete and refuses the header (GCC accepts it).
  Json();
  ~Json();
  Json(const Json&);
  Json(Json&&) noexcept;
  Json& operator=(const Json&);
  Json& operator=(Json&&) noexcept;

  const Json* find(std::string_view key) const;
};

// Parses one JSON value filling all of `text` (surrounding whitespace allowed).
// Errors say where: "byte 17: expected ':'".
Result<Json, std::string> json_parse(std::string_view text);

// Encodes a JSON value as msgpack (objects as maps, integers as ints).
void json_to_msgpack(const Json& v, std::string& out);

// Appends `obj` as JSON. bin values become lowercase hex strings.
void msgpack_to_json(const msgpack_object& obj, std::string& out);
void json_escape(std::string_view s, std::string& out);

}  // namespace cairn::cli
