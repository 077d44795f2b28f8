// result.hpp — a value or an error, for paths that must not throw.
//
// Glossary: Result<T, E> holds either a T (ok) or an E (error). The caller must look
// at ok() before value()/error(); reading the wrong side aborts, because a silently
// wrong value is worse than a crash in an audit daemon.
#pragma once

#include <cstdlib>
#include <utility>
#include <variant>

namespace cairn {

template <class E>
struct Err {
  E error;
};
template <class E>
Err(E) -> Err<E>;

template <class T, class E>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  template <class F>
  Result(Err<F> e) : v_(std::in_place_index<1>, E(std::move(e.error))) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { check(true); return std::get<0>(v_); }
  const T& value() const& { check(true); return std::get<0>(v_); }
  T&& value() && { check(true); return std::get<0>(std::move(v_)); }
  const E& error() const { check(false); return std::get<1>(v_); }

 private:
  void check(bool want_ok) const {
    if (ok() != want_ok) std::abort();
  }
  std::variant<T, E> v_;
};

// Result<void, E>: success carries nothing.
struct Ok {};

template <class E>
using Status = Result<Ok, E>;

}  // namespace cairn
