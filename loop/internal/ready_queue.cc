// Copyright 2026 The ctxloop Authors.

#include "ctxloop/loop/internal/ready_queue.h"

namespace ctxloop {
namespace loop_internal {

ReadyQueue::~ReadyQueue() {
  while (!empty()) {
    front().Destroy();
    PopFront();
  }
  for (Chunk* c = head_; c != nullptr;) {
    Chunk* next = c->next;
    delete c;
    c = next;
  }
  for (Chunk* c = free_; c != nullptr;) {
    Chunk* next = c->next;
    delete c;
    c = next;
  }
}

void ReadyQueue::AddTailChunk() {
  Chunk* chunk;
  if (free_ != nullptr) {
    chunk = free_;
    free_ = chunk->next;
    --free_count_;
    chunk->next = nullptr;
  } else {
    chunk = new Chunk;
  }
  if (tail_ == nullptr) {
    head_ = chunk;
    head_index_ = 0;
  } else {
    tail_->next = chunk;
  }
  tail_ = chunk;
  tail_index_ = 0;
}

void ReadyQueue::PopHeadChunk() {
  Chunk* done = head_;
  head_ = done->next;
  head_index_ = 0;
  Recycle(done);
}

void ReadyQueue::Recycle(Chunk* chunk) {
  if (free_count_ >= kMaxFreeChunks) {
    delete chunk;
    return;
  }
  chunk->next = free_;
  free_ = chunk;
  ++free_count_;
}

void ReadyQueue::MoveAllTo(ReadyQueue* other) {
  // Hands over the chunks that hold entries; `other` keeps its free list.
  if (empty()) return;
  std::swap(head_, other->head_);
  std::swap(tail_, other->tail_);
  std::swap(head_index_, other->head_index_);
  std::swap(tail_index_, other->tail_index_);
  std::swap(size_, other->size_);
  // `other` was empty: it gave us at most one (empty) chunk back; keep that
  // as our tail, reset, or start with no chunk.
  if (head_ != nullptr) {
    for (Chunk* c = head_->next; c != nullptr;) {
      Chunk* next = c->next;
      Recycle(c);
      c = next;
    }
    head_->next = nullptr;
    tail_ = head_;
    head_index_ = 0;
    tail_index_ = 0;
  } else {
    tail_index_ = kChunkEntries;
  }
  size_ = 0;
}

}  // namespace loop_internal
}  // namespace ctxloop
