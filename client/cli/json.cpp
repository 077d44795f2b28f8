#include "json.hpp"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "../../protocol/pack.hpp"
#include "utf8.hpp"

namespace cairn::cli {

Json::Json() = default;
Json::~Json() = default;
Json::Json(const Json&) = default;
Json::Json(Json&&) noexcept = default;
Json& Json::operator=(const Json&) = default;
Json& Json::operator=(Json&&) noexcept = default;

const Json* Json::find(std::string_view key) const {
  for (const auto& [k, v] : members)
    if (k == key) return &v;
  return nullptr;
}

namespace {

constexpr int kMaxDepth = 32;

struct Parser {
  std::string_view t;
  size_t i = 0;
  std::string err;

  bool fail(const std::string& what) {
    if (err.empty()) err = "byte " + std::to_string(i) + ": " + what;
    return false;
  }
  void ws() {
    while (i < t.size() && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r')) ++i;
  }
  bool lit(std::string_view w) {
    if (t.substr(i, w.size()) != w) return fail("invalid literal");
    i += w.size();
    return true;
  }
  static void put_utf8(std::string& o, uint32_t cp) {
    if (cp < 0x80) {
      o += static_cast<char>(cp);
    } else if (cp < 0x800) {
      o += static_cast<char>(0xc0 | (cp >> 6));
      o += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      o += static_cast<char>(0xe0 | (cp >> 12));
      o += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      o += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      o += static_cast<char>(0xf0 | (cp >> 18));
      o += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      o += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      o += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }
  bool hex4(uint32_t& out) {
    if (i + 4 > t.size()) return fail("truncated \\u escape");
    out = 0;
    for (int k = 0; k < 4; ++k) {
      char c = t[i++];
      out <<= 4;
      if (c >= '0' && c <= '9') out |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') out |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') out |= static_cast<uint32_t>(c - 'A' + 10);
      else return fail("bad hex digit in \\u escape");
    }
    return true;
  }
  bool string(std::string& out) {
    ++i;  // opening quote
    for (;;) {
      if (i >= t.size()) return fail("unterminated string");
      char c = t[i++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return fail("raw control character in string");
      if (static_cast<unsigned char>(c) >= 0x80) {
        --i;
        uint32_t cp = 0;
        size_t n = utf8_decode(t.substr(i), cp);
        if (n == 0) return fail("invalid UTF-8 in string");
        out.append(t.substr(i, n));
        i += n;
        continue;
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i >= t.size()) return fail("unterminated escape");
      char e = t[i++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xd800 && cp <= 0xdbff) {
            uint32_t lo = 0;
            if (t.substr(i, 2) != "\\u") return fail("lone high surrogate");
            i += 2;
            if (!hex4(lo)) return false;
            if (lo < 0xdc00 || lo > 0xdfff) return fail("invalid low surrogate");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            return fail("lone low surrogate");
          }
          put_utf8(out, cp);
          break;
        }
        default: return fail("unknown escape");
      }
    }
  }
  bool number(Json& v) {
    size_t start = i;
    if (t[i] == '-') ++i;
    if (i >= t.size() || !std::isdigit(static_cast<unsigned char>(t[i]))) return fail("bad number");
    if (t[i] == '0' && i + 1 < t.size() && std::isdigit(static_cast<unsigned char>(t[i + 1])))
      return fail("leading zero");
    while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
    bool is_float = false;
    if (i < t.size() && t[i] == '.') {
      is_float = true;
      ++i;
      if (i >= t.size() || !std::isdigit(static_cast<unsigned char>(t[i]))) return fail("bad fraction");
      while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
    }
    if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
      is_float = true;
      ++i;
      if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
      if (i >= t.size() || !std::isdigit(static_cast<unsigned char>(t[i]))) return fail("bad exponent");
      while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
    }
    std::string num(t.substr(start, i - start));
    errno = 0;
    if (!is_float) {
      long long n = std::strtoll(num.c_str(), nullptr, 10);
      if (errno == 0) {
        v.kind = Json::Kind::integer;
        v.i = n;
        return true;
      }
    }
    v.kind = Json::Kind::number;
    v.d = std::strtod(num.c_str(), nullptr);
    if (!std::isfinite(v.d)) return fail("number out of range");
    return true;
  }
  bool value(Json& v, int depth) {
    if (depth > kMaxDepth) return fail("nested too deeply");
    ws();
    if (i >= t.size()) return fail("unexpected end");
    char c = t[i];
    if (c == '{') {
      v.kind = Json::Kind::object;
      ++i;
      ws();
      if (i < t.size() && t[i] == '}') {
        ++i;
        return true;
      }
      for (;;) {
        ws();
        if (i >= t.size() || t[i] != '"') return fail("expected a string key");
        std::string key;
        if (!string(key)) return false;
        ws();
        if (i >= t.size() || t[i] != ':') return fail("expected ':'");
        ++i;
        Json member;
        if (!value(member, depth + 1)) return false;
        v.members.emplace_back(std::move(key), std::move(member));
        ws();
        if (i < t.size() && t[i] == ',') {
          ++i;
          continue;
        }
        if (i < t.size() && t[i] == '}') {
          ++i;
          return true;
        }
        return fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v.kind = Json::Kind::array;
      ++i;
      ws();
      if (i < t.size() && t[i] == ']') {
        ++i;
        return true;
      }
      for (;;) {
        Json item;
        if (!value(item, depth + 1)) return false;
        v.items.push_back(std::move(item));
        ws();
        if (i < t.size() && t[i] == ',') {
          ++i;
          continue;
        }
        if (i < t.size() && t[i] == ']') {
          ++i;
          return true;
        }
        return fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v.kind = Json::Kind::string;
      return string(v.s);
    }
    if (c == 't') {
      v.kind = Json::Kind::boolean;
      v.b = true;
      return lit("true");
    }
    if (c == 'f') {
      v.kind = Json::Kind::boolean;
      return lit("false");
    }
    if (c == 'n') return lit("null");
    if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) return number(v);
    return fail("unexpected character");
  }
};

}  // namespace

Result<Json, std::string> json_parse(std::string_view text) {
  Parser p{text};
  Json v;
  if (!p.value(v, 0)) return Err{p.err};
  p.ws();
  if (p.i != text.size()) {
    p.fail("trailing characters");
    return Err{p.err};
  }
  return v;
}

void json_to_msgpack(const Json& v, std::string& out) {
  proto::detail::Packer pk(out);
  switch (v.kind) {
    case Json::Kind::null: pk.nil(); break;
    case Json::Kind::boolean: pk.boolean(v.b); break;
    case Json::Kind::integer: pk.i64(v.i); break;
    case Json::Kind::number: pk.f64(v.d); break;
    case Json::Kind::string: pk.str(v.s); break;
    case Json::Kind::array:
      pk.array(v.items.size());
      for (const auto& x : v.items) json_to_msgpack(x, out);
      break;
    case Json::Kind::object:
      pk.map(v.members.size());
      for (const auto& [k, x] : v.members) {
        pk.str(k);
        json_to_msgpack(x, out);
      }
      break;
  }
}

void json_escape(std::string_view s, std::string& out) {
  out += '"';
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    size_t n = utf8_decode(s.substr(i), cp);
    if (n == 0) {
      // Not UTF-8 (the daemon refuses it; a damaged file might hold it). JSON text must
      // be UTF-8, so the byte becomes U+FFFD.
      out += "\\ufffd";
      ++i;
      continue;
    }
    switch (cp) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (unsafe_on_terminal(cp)) {
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
          out += buf;
        } else {
          out.append(s.substr(i, n));
        }
    }
    i += n;
  }
  out += '"';
}

void msgpack_to_json(const msgpack_object& o, std::string& out) {
  char buf[64];
  switch (o.type) {
    case MSGPACK_OBJECT_NIL: out += "null"; break;
    case MSGPACK_OBJECT_BOOLEAN: out += o.via.boolean ? "true" : "false"; break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(o.via.u64));
      out += buf;
      break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(o.via.i64));
      out += buf;
      break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
      if (std::isfinite(o.via.f64)) {
        // %.17g reads back as the same double; a float that prints like an integer
        // ("1", "-0") gets ".0", or json_parse would read it back as an integer (and
        // -0.0 as 0): `query -o json | send --stdin` must not change a value's type.
        int n = std::snprintf(buf, sizeof buf, "%.17g", o.via.f64);
        out.append(buf, static_cast<size_t>(n));
        if (std::strpbrk(buf, ".e") == nullptr) out += ".0";
      } else {
        out += "null";
      }
      break;
    case MSGPACK_OBJECT_STR: json_escape({o.via.str.ptr, o.via.str.size}, out); break;
    case MSGPACK_OBJECT_BIN:
    case MSGPACK_OBJECT_EXT: {
      const char* p = o.type == MSGPACK_OBJECT_BIN ? o.via.bin.ptr : o.via.ext.ptr;
      uint32_t n = o.type == MSGPACK_OBJECT_BIN ? o.via.bin.size : o.via.ext.size;
      static const char* d = "0123456789abcdef";
      out += '"';
      for (uint32_t i = 0; i < n; ++i) {
        out += d[static_cast<unsigned char>(p[i]) >> 4];
        out += d[static_cast<unsigned char>(p[i]) & 15];
      }
      out += '"';
      break;
    }
    case MSGPACK_OBJECT_ARRAY:
      out += '[';
      for (uint32_t i = 0; i < o.via.array.size; ++i) {
        if (i) out += ',';
        msgpack_to_json(o.via.array.ptr[i], out);
      }
      out += ']';
      break;
    case MSGPACK_OBJECT_MAP:
      out += '{';
      for (uint32_t i = 0; i < o.via.map.size; ++i) {
        if (i) out += ',';
        const auto& kv = o.via.map.ptr[i];
        if (kv.key.type == MSGPACK_OBJECT_STR) {
          json_escape({kv.key.via.str.ptr, kv.key.via.str.size}, out);
        } else if (kv.key.type == MSGPACK_OBJECT_MAP || kv.key.type == MSGPACK_OBJECT_ARRAY) {
          // A container as a key (cairnd never stores one; a damaged file might) is
          // named, not printed: printed and escaped, keys nested in keys would double
          // their backslashes at every level (found by fuzz_cli_json: 810 bytes of
          // input, gigabytes of output).
          bool map = kv.key.type == MSGPACK_OBJECT_MAP;
          json_escape("<" + std::string(map ? "map" : "array") + " of " +
                          std::to_string(map ? kv.key.via.map.size : kv.key.via.array.size) + ">",
                      out);
        } else {
          std::string k;
          msgpack_to_json(kv.key, k);
          json_escape(k, out);
        }
        out += ':';
        msgpack_to_json(kv.val, out);
      }
      out += '}';
      break;
  }
}

}  // namespace cairn::cli
