// Copyright 2026 The ctxloop Authors.
//
// Internal. The loop thread's queue of ready tasks: `TaskEntry`, one queued
// task with its callable built in place, and `ReadyQueue`, a FIFO of such
// entries in fixed-size chunks.
//
// Why this shape: a task is built once, where it will run, and run and
// destroyed there; it is never moved again. A callable of up to
// `TaskEntry::kInlineSize` bytes (five pointers; a `Task` itself fits) lives
// inside its 64-byte entry; a larger one costs one allocation when posted. A
// queue of chunks never relocates what it holds, so a burst of posts costs the
// same per task as a trickle (no vector doubling that moves every queued task
// and touches fresh pages), and emptied chunks are kept on a free list (up to
// `ReadyQueue::kMaxFreeChunks`, then freed) for the next burst.
//
// Cost: `Emplace` is a bounds check, the callable's construction and two
// increments (a chunk from the free list every `kChunkEntries` tasks);
// running an entry is one indirect call that invokes and destroys the
// callable.
//
// Thread-safety: none; one `ReadyQueue` belongs to one loop thread (see
// local_post.h for who may call what).

#ifndef CTXLOOP_LOOP_INTERNAL_READY_QUEUE_H_
#define CTXLOOP_LOOP_INTERNAL_READY_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "absl/base/optimization.h"
#include "ctxloop/loop/context_handle.h"

namespace ctxloop {
namespace loop_internal {

// One queued task: the callable (inline, or a pointer to it on the heap), the
// function that runs or destroys it, and the context it runs on.
class TaskEntry {
 public:
  static constexpr size_t kInlineSize = 40;
  static constexpr size_t kInlineAlign = 16;
  template <typename T>
  static constexpr bool kStoredInline = sizeof(T) <= kInlineSize &&
                                        alignof(T) <= kInlineAlign;

  TaskEntry() = default;
  TaskEntry(const TaskEntry&) = delete;
  TaskEntry& operator=(const TaskEntry&) = delete;

  // Builds the callable from `f` in this (empty) entry. If that throws, the
  // entry stays empty.
  template <typename F>
  void Construct(ContextHandle ctx, F&& f) {
    using T = std::decay_t<F>;
    if constexpr (kStoredInline<T>) {
      ::new (static_cast<void*>(storage_)) T(std::forward<F>(f));
      op_ = &InlineOp<T>;
    } else {
      T* heap = new T(std::forward<F>(f));
      ::new (static_cast<void*>(storage_)) T*(heap);
      op_ = &HeapOp<T>;
    }
    ctx_ = ctx;
  }

  // Invokes the callable with the entry's context, then destroys it (also
  // when it throws; the exception propagates). The entry is empty after.
  void Run() { op_(storage_, ctx_, /*run=*/true); }
  // Destroys the callable unrun. The entry is empty after.
  void Destroy() { op_(storage_, ctx_, /*run=*/false); }

  ContextHandle ctx() const { return ctx_; }

  // The callable, which the caller knows to be a `T` stored inline.
  template <typename T>
  T& As() {
    static_assert(kStoredInline<T>, "only inline callables can be reached");
    return *std::launder(reinterpret_cast<T*>(storage_));
  }

 private:
  using Op = void (*)(void* storage, ContextHandle ctx, bool run);

  template <typename T>
  static void InlineOp(void* storage, ContextHandle ctx, bool run) {
    T* f = std::launder(static_cast<T*>(storage));
    if (run) {
      struct Destroyer {
        T* f;
        ~Destroyer() { f->~T(); }
      } destroyer{f};
      std::move (*f)(ctx);
    } else {
      f->~T();
    }
  }

  template <typename T>
  static void HeapOp(void* storage, ContextHandle ctx, bool run) {
    std::unique_ptr<T> f(*std::launder(static_cast<T**>(storage)));
    if (run) std::move (*f)(ctx);
  }

  alignas(kInlineAlign) unsigned char storage_[kInlineSize];
  Op op_;
  ContextHandle ctx_;
};

static_assert(sizeof(TaskEntry) == 64, "a TaskEntry is one cache line");

// FIFO of `TaskEntry`s in chunks. Entries never move while queued.
class ReadyQueue {
 public:
  static constexpr uint32_t kChunkEntries = 63;  // ~4 KiB chunks.
  // Emptied chunks kept for reuse (1 MiB); more are freed.
  static constexpr size_t kMaxFreeChunks = 256;

  ReadyQueue() = default;
  ReadyQueue(const ReadyQueue&) = delete;
  ReadyQueue& operator=(const ReadyQueue&) = delete;
  // Destroys (unrun) whatever is still queued, then frees every chunk.
  ~ReadyQueue();

  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }

  // Appends a task built in place from `f`. If building throws, nothing is
  // queued.
  template <typename F>
  void Emplace(ContextHandle ctx, F&& f) {
    if (ABSL_PREDICT_FALSE(tail_index_ == kChunkEntries)) AddTailChunk();
    tail_->entries[tail_index_].Construct(ctx, std::forward<F>(f));
    ++tail_index_;
    ++size_;
  }

  // The oldest entry; the queue must not be empty.
  TaskEntry& front() { return head_->entries[head_index_]; }
  // Removes the oldest entry, which must have been run or destroyed.
  void PopFront() {
    ++head_index_;
    if (--size_ == 0) {
      // head_ == tail_: reuse the same chunk from its start.
      head_index_ = 0;
      tail_index_ = 0;
    } else if (head_index_ == kChunkEntries) {
      PopHeadChunk();
    }
  }

  // Moves every queued entry (in order) to `other`, which must be empty.
  void MoveAllTo(ReadyQueue* other);

 private:
  struct Chunk {
    Chunk* next = nullptr;
    TaskEntry entries[kChunkEntries];
  };

  void AddTailChunk();
  void PopHeadChunk();
  void Recycle(Chunk* chunk);

  Chunk* head_ = nullptr;
  Chunk* tail_ = nullptr;
  uint32_t head_index_ = 0;
  uint32_t tail_index_ = kChunkEntries;  // No chunk yet: the first adds one.
  size_t size_ = 0;
  Chunk* free_ = nullptr;  // Singly linked through `next`.
  size_t free_count_ = 0;
};

}  // namespace loop_internal
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_INTERNAL_READY_QUEUE_H_
