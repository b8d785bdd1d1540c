// Copyright 2026 The ctxloop Authors.
//
// Internal. `AnyValue` holds one context-local value of any copyable type.
//
// Each value carries its type's tag (the address of a per-type variable), so
// reading it as another type is detected (`TryAs` returns null), never
// undefined behaviour.
//
// Cost: a value of at most `kInlineSize` bytes whose copy, move and
// destruction cannot throw (ids, pointers, small structs, a span reference
// holding a `std::shared_ptr`) is stored inline: no allocation; copying it is
// a memcpy when trivially copyable, else one call through a per-type table.
// Other values (e.g. `std::string`) are stored once, immutable, behind a
// `std::shared_ptr<const T>` kept inline, so copying an `AnyValue` (as a
// child context's copy-on-write table does) never copies the value itself.
// `ContextKey::Set` builds an inline value in place (`InPlaceInline<T>`): no
// temporary `AnyValue`, no call through the table; `Get` reads it with one
// tag compare (`Is<T>`, then `AsUnchecked<T>`).
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
namespace loop_internal {

class AnyValue {
 public:
  static constexpr size_t kInlineSize = 32;

  template <typename T>
  static constexpr bool kStoredInline =
      sizeof(T) <= kInlineSize && alignof(T) <= alignof(std::max_align_t) &&
      std::is_nothrow_copy_constructible<
          T>::value&& std::is_nothrow_move_constructible<T>::value&& std::
          is_nothrow_destructible<T>::value;

  // Tag of the in-place constructor.
  template <typename T>
  struct InPlaceInline {};

  AnyValue() = default;
  // A `T` built in place from `value`, with no temporary `AnyValue` and no
  // call through the per-type table. Only for types stored inline (the fast
  // path of `ContextKey::Set`; others go through `Make`).
  template <typename T, typename U>
  AnyValue(InPlaceInline<T>, U&& value) noexcept
      : ops_(std::is_trivially_copyable<T>::value ? nullptr : &kOps<T>),
        type_(TypeTag<T>()) {
    static_assert(kStoredInline<T>, "InPlaceInline: T is not stored inline");
    new (buffer_) T(std::forward<U>(value));
  }
  AnyValue(const AnyValue& other) : ops_(other.ops_), type_(other.type_) {
    if (ops_ == nullptr) {
      std::memcpy(buffer_, other.buffer_, kInlineSize);
    } else {
      ops_->copy(buffer_, other.buffer_);
    }
  }
  AnyValue(AnyValue&& other) noexcept : ops_(other.ops_), type_(other.type_) {
    if (ops_ == nullptr) {
      std::memcpy(buffer_, other.buffer_, kInlineSize);
    } else {
      ops_->move(buffer_, other.buffer_);
      other.ops_ = nullptr;  // Its object was destroyed by the move.
      other.type_ = nullptr;
    }
  }
  AnyValue& operator=(const AnyValue& other) {
    if (this != &other) {
      AnyValue copy(other);
      *this = std::move(copy);
    }
    return *this;
  }
  AnyValue& operator=(AnyValue&& other) noexcept {
    if (this != &other) {
      Destroy();
      new (this) AnyValue(std::move(other));
    }
    return *this;
  }
  ~AnyValue() { Destroy(); }

  template <typename T>
  static AnyValue Make(T value) {
    AnyValue v;
    v.type_ = TypeTag<T>();
    if constexpr (kStoredInline<T>) {
      new (v.buffer_) T(std::move(value));
      if constexpr (!std::is_trivially_copyable<T>::value) v.ops_ = &kOps<T>;
    } else {
      using Box = std::shared_ptr<const T>;
      new (v.buffer_) Box(std::make_shared<const T>(std::move(value)));
      v.ops_ = &kOps<Box>;
    }
    return v;
  }

  // The value if it was made by `Make<T>` with this same `T`, else null
  // (also for an empty value).
  template <typename T>
  const T* TryAs() const {
    return Is<T>() ? &AsUnchecked<T>() : nullptr;
  }
  // Whether the value was made by `Make<T>` (or in place) with this `T`.
  template <typename T>
  bool Is() const {
    return type_ == TypeTag<T>();
  }
  // The value; only after `Is<T>()` returned true.
  template <typename T>
  const T& AsUnchecked() const {
    if constexpr (kStoredInline<T>) {
      return *std::launder(reinterpret_cast<const T*>(buffer_));
    } else {
      return **std::launder(
          reinterpret_cast<const std::shared_ptr<const T>*>(buffer_));
    }
  }

 private:
  struct Ops {
    void (*copy)(void* to, const void* from);
    void (*move)(void* to, void* from);  // Leaves `from` destroyed.
    void (*destroy)(void* at);
  };
  template <typename T>
  static constexpr Ops kOps = {
      [](void* to, const void* from) {
        new (to) T(*static_cast<const T*>(from));
      },
      [](void* to, void* from) {
        new (to) T(std::move(*static_cast<T*>(from)));
        static_cast<T*>(from)->~T();
      },
      [](void* at) { static_cast<T*>(at)->~T(); },
  };

  // One distinct address per type. An inline variable: one definition in
  // the whole program.
  template <typename T>
  struct TypeTagHolder {
    static constexpr char kTag = 0;
  };
  template <typename T>
  static const void* TypeTag() {
    return &TypeTagHolder<T>::kTag;
  }

  void Destroy() {
    if (ops_ != nullptr) ops_->destroy(buffer_);
    ops_ = nullptr;
    type_ = nullptr;
  }

  // Not zeroed: read only as the type `type_` names (an empty value's bytes
  // are copied, never read).
  alignas(std::max_align_t) unsigned char buffer_[kInlineSize];
  const Ops* ops_ = nullptr;    // Null: trivially copyable (or empty).
  const void* type_ = nullptr;  // TypeTag<T>() of the value; null: empty.
};

}  // namespace loop_internal
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_INTERNAL_ANY_VALUE_H_
