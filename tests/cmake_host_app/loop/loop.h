// The host application's own loop/loop.h. Same path (minus the "ctxloop/"
// prefix) and same Google-style include guard as ctxloop's loop/loop.h would
// have without its prefix, so a clash would fail to compile.
#ifndef LOOP_LOOP_H_
#define LOOP_LOOP_H_

namespace host_loop {

inline const char* Name() { return "cmake_host_app"; }

}  // namespace host_loop

#endif  // LOOP_LOOP_H_
