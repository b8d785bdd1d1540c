cmake_policy(VERSION 3.16)
# cmake -DCTXLOOP_SOURCE_DIR=<dir> -DCTXLOOP_LISTED_FILES_TXT=<file>
#       -DCTXLOOP_PACKAGES=<pkg;...> [-DCTXLOOP_WARN_ONLY=ON]
#       -P CheckListedFiles.cmake
#
# Fails (or, with CTXLOOP_WARN_ONLY, warns) if a .cc/.h file under one of
# the packages is named in no CMakeLists.txt (ctxloop_library/ctxloop_test),
# or if a listed file does not exist. Run by CMakeLists.txt at configure time
# and by CTest as cmake_lists_complete.
foreach(v CTXLOOP_SOURCE_DIR CTXLOOP_LISTED_FILES_TXT CTXLOOP_PACKAGES)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "CheckListedFiles.cmake: -D${v}=... is required")
  endif()
endforeach()

file(STRINGS "${CTXLOOP_LISTED_FILES_TXT}" listed)
set(on_disk)
foreach(pkg IN LISTS CTXLOOP_PACKAGES)
  file(GLOB_RECURSE files LIST_DIRECTORIES false
    "${CTXLOOP_SOURCE_DIR}/${pkg}/*.cc" "${CTXLOOP_SOURCE_DIR}/${pkg}/*.h")
  list(APPEND on_disk ${files})
endforeach()

set(problems)
foreach(f IN LISTS on_disk)
  if(NOT f IN_LIST listed)
    file(RELATIVE_PATH rel "${CTXLOOP_SOURCE_DIR}" "${f}")
    list(APPEND problems "  ${rel}: in no CMakeLists.txt (add it to its package's lists)")
  endif()
endforeach()
foreach(f IN LISTS listed)
  if(f AND NOT EXISTS "${f}")
    file(RELATIVE_PATH rel "${CTXLOOP_SOURCE_DIR}" "${f}")
    list(APPEND problems "  ${rel}: listed in a CMakeLists.txt but missing")
  endif()
endforeach()

if(problems)
  list(LENGTH problems n)
  string(REPLACE ";" "\n" text "${problems}")
  set(text "ctxloop's CMake file lists are out of date (${n} file(s)):\n${text}")
  if(CTXLOOP_WARN_ONLY)
    message(WARNING "${text}")
  else()
    message(FATAL_ERROR "${text}")
  endif()
else()
  list(LENGTH on_disk n)
  message(STATUS "ctxloop: all ${n} .cc/.h files of ${CTXLOOP_PACKAGES} are in the CMake lists")
endif()
