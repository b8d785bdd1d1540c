// Minimal host program: posts one task to a ctxloop root context and runs it.
#include <iostream>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ctxloop/loop/loop.h"
#include "loop/loop.h"  // The host's own header of the same name.

int main() {
  ctxloop::Loop loop;
  absl::StatusOr<ctxloop::ContextHandle> ctx = loop.NewContext();
  if (!ctx.ok()) {
    std::cerr << "NewContext: " << ctx.status() << "\n";
    return 1;
  }
  bool ran = false;
  absl::Status s =
      ctxloop::Post(*ctx, [&](ctxloop::ContextHandle c) { ran = true; });
  if (!s.ok()) {
    std::cerr << "Post: " << s << "\n";
    return 1;
  }
  s = loop.RunUntilIdle();
  if (!s.ok()) {
    std::cerr << "RunUntilIdle: " << s << "\n";
    return 1;
  }
  std::cout << host_loop::Name() << ": task " << (ran ? "ran" : "did not run")
            << "\n";
  return ran ? 0 : 1;
}
