// Copyright 2026 The ctxloop Authors.
//
// Internal. `AnyValue` holds one context-local value of any copyable type.
//
// Cost: values that are trivially copyable and at most `kInlineSize` bytes
// (ids, pointers, small structs such as a span reference) are stored inline:
// no allocation, copy is a memcpy. Other values are stored once, immutable,
// behind a `std::shared_ptr<const T>`, so copying an `AnyValue` (as a child
// context's copy-on-write table does) never copies the value itself.
//
// Thread-safety: a plain value type; the owner synchronizes.

#ifndef CTXLOOP_LOOP_INTERNAL_ANY_VALUE_H_
#define CTXLOOP_LOOP_INTERNAL_ANY_VALUE_H_

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace ctxloop {
namespace internal {

class AnyValue {
 public:
  static constexpr size_t kInlineSize = 32;

  template <typename T>
  static constexpr bool kStoredInline =
      std::is_trivially_copyable<T>::value && sizeof(T) <= kInlineSize &&
      alignof(T) <= alignof(std::max_align_t);

  AnyValue() = default;

  template <typename T>
  static AnyValue Make(T value) {
    AnyValue v;
    if constexpr (kStoredInline<T>) {
      new (v.inline_) T(value);
    } else {
      v.boxed_ = std::make_shared<const T>(std::move(value));
    }
    return v;
  }

  // Precondition: this value was made by `Make<T>` with the same `T`.
  template <typename T>
  const T& As() const {
    if constexpr (kStoredInline<T>) {
      return *std::launder(reinterpret_cast<const T*>(inline_));
    } else {
      return *static_cast<const T*>(boxed_.get());
    }
  }

 private:
  alignas(std::max_align_t) unsigned char inline_[kInlineSize] = {};
  std::shared_ptr<const void> boxed_;
};

}  // namespace internal
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_INTERNAL_ANY_VALUE_H_
