// A host file that includes one of ctxloop's internal headers. Under
// --config=layering this must not build (layering_test.sh checks the
// error); the header is reachable at all only because ctxloop's public
// headers include internal ones.
#include "ctxloop/loop/internal/loop_core.h"

namespace host_layering {

int InternalHeaderIncluded() { return 1; }

}  // namespace host_layering
