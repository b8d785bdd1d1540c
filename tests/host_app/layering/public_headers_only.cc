// A host file that includes only public ctxloop headers of its direct deps:
// it builds under --config=layering (layering_test.sh).
#include "ctxloop/loop/context_key.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/stream/stream.h"
#include "ctxloop/trace/tracer.h"

namespace host_layering {

// Instantiates the inline and template code of the public headers that call
// into ctxloop's internal namespaces (ContextKey into loop_internal,
// MakeStream into stream_internal): the host names only public types.
int UsesInlineCode() {
  ctxloop::Loop loop;
  absl::StatusOr<ctxloop::ContextHandle> ctx = loop.NewContext();
  if (!ctx.ok()) return 0;
  const ctxloop::ContextKey<int> key("host_key", 0);
  absl::StatusOr<ctxloop::Token> token = key.Set(*ctx, 1);
  if (!token.ok() || !key.Reset(*ctx, *token).ok()) return 0;
  auto pair = ctxloop::MakeStream<int>(*ctx);
  return pair.ok() ? 1 : 0;
}

}  // namespace host_layering
