# Functions the package CMakeLists.txt files (loop/, trace/, stream/) declare
# their libraries and tests with, so that each package lists its files once,
# as its BUILD.bazel does:
#
#   ctxloop_library(<name> [TESTONLY] SRCS <.cc...> HDRS <.h...>
#                   [PRIVATE_HDRS <.h...>] DEPS <targets...>)
#     Target ctxloop_<name>, alias ctxloop::<name> (the name a host links,
#     also after install). SRCS and HDRS are relative to the package
#     directory; HDRS are included as "ctxloop/<package>/<path>" (the package
#     is the directory name) and installed to include/ctxloop/<package>/.
#     Internal headers (internal/, namespace ctxloop::<package>_internal) are
#     not an API: they go in HDRS only if a public header includes them (the
#     installed package needs them then), otherwise in PRIVATE_HDRS, which
#     ctxloop's own sources and tests include the same way but which are
#     never installed. Without SRCS the library is header-only (INTERFACE).
#     TESTONLY: for ctxloop's tests only; neither installed nor exported.
#
#   ctxloop_test(<name> DEPS <targets...>)
#     Builds <name>.cc of the package against GoogleTest's main and registers
#     it with CTest as "<package>/<name>" (Bazel: //<package>:<name>).
#
#   ctxloop_files_not_built(<files...>)
#     Records files of the package that this configuration does not build
#     (a library and its test that need an optional dependency not found,
#     e.g. embed/'s Asio and libuv drivers), so the list check still knows
#     them.
#
# Every file named here is recorded; CMakeLists.txt checks that no .cc/.h of
# a package is left out (test cmake_lists_complete), so a file added for
# Bazel only cannot go unnoticed.

# "ctxloop/<package>" directory of the build tree's include dir; the headers
# are symlinked there (copied where symlinks fail) so the sources stay where
# they are.
function(_ctxloop_package out_pkg)
  file(RELATIVE_PATH rel "${PROJECT_SOURCE_DIR}" "${CMAKE_CURRENT_SOURCE_DIR}")
  set(${out_pkg} "${rel}" PARENT_SCOPE)
endfunction()

function(_ctxloop_record_files)
  foreach(f IN LISTS ARGN)
    set_property(GLOBAL APPEND PROPERTY CTXLOOP_LISTED_FILES
      "${CMAKE_CURRENT_SOURCE_DIR}/${f}")
  endforeach()
endfunction()

function(ctxloop_library name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "TESTONLY" "" "SRCS;HDRS;PRIVATE_HDRS;DEPS")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "ctxloop_library(${name}): unknown arguments ${arg_UNPARSED_ARGUMENTS}")
  endif()
  _ctxloop_package(pkg)
  _ctxloop_record_files(${arg_SRCS} ${arg_HDRS} ${arg_PRIVATE_HDRS})
  if(arg_TESTONLY AND NOT CTXLOOP_BUILD_TESTS)
    # A test helper (it links GoogleTest): only with the tests.
    return()
  endif()

  # The build tree's "ctxloop/<pkg>/..." view of the headers.
  foreach(h IN LISTS arg_HDRS arg_PRIVATE_HDRS)
    set(link "${CTXLOOP_BUILD_INCLUDE_DIR}/ctxloop/${pkg}/${h}")
    get_filename_component(link_dir "${link}" DIRECTORY)
    file(MAKE_DIRECTORY "${link_dir}")
    file(CREATE_LINK "${CMAKE_CURRENT_SOURCE_DIR}/${h}" "${link}"
      COPY_ON_ERROR SYMBOLIC)
    if(NOT IS_SYMLINK "${link}")
      # A copy: re-run CMake when the header is edited, to refresh it.
      set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${h}")
    endif()
  endforeach()

  set(target "ctxloop_${name}")
  if(arg_SRCS)
    add_library(${target} ${arg_SRCS} ${arg_HDRS} ${arg_PRIVATE_HDRS})
    set(scope PUBLIC)
    target_compile_options(${target} PRIVATE ${CTXLOOP_WARNING_FLAGS})
  else()
    add_library(${target} INTERFACE)
    set(scope INTERFACE)
  endif()
  add_library(ctxloop::${name} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${name})
  if(arg_SRCS)
    # With BUILD_SHARED_LIBS: libctxloop_<name>.so.0.1 (0.x: minor = ABI).
    set_target_properties(${target} PROPERTIES
      VERSION "${PROJECT_VERSION}"
      SOVERSION "${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}")
  endif()
  target_compile_features(${target} ${scope} cxx_std_17)
  target_include_directories(${target} ${scope}
    "$<BUILD_INTERFACE:${CTXLOOP_BUILD_INCLUDE_DIR}>"
    "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
  target_link_libraries(${target} ${scope} ${arg_DEPS})

  if(NOT arg_TESTONLY)
    set_property(GLOBAL APPEND PROPERTY CTXLOOP_INSTALLED_TARGETS ${target})
    if(CTXLOOP_INSTALL)
      foreach(h IN LISTS arg_HDRS)
        get_filename_component(h_dir "${h}" DIRECTORY)
        install(FILES "${h}"
          DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/ctxloop/${pkg}/${h_dir}"
          COMPONENT ctxloop_development)
      endforeach()
    endif()
  endif()
endfunction()

function(ctxloop_test name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "DEPS")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "ctxloop_test(${name}): unknown arguments ${arg_UNPARSED_ARGUMENTS}")
  endif()
  _ctxloop_package(pkg)
  _ctxloop_record_files(${name}.cc)
  if(NOT CTXLOOP_BUILD_TESTS)
    return()
  endif()
  string(REPLACE "/" "_" pkg_id "${pkg}")
  set(target "ctxloop_${pkg_id}_${name}")
  add_executable(${target} ${name}.cc)
  set_target_properties(${target} PROPERTIES OUTPUT_NAME ${name})
  target_compile_options(${target} PRIVATE ${CTXLOOP_WARNING_FLAGS})
  target_link_libraries(${target} PRIVATE ${arg_DEPS} GTest::gtest_main)
  add_test(NAME "${pkg}/${name}" COMMAND ${target})
  # Like Bazel: a private, existing TEST_TMPDIR; "small" tests get 60 s.
  set(tmp "${CMAKE_CURRENT_BINARY_DIR}/${name}.tmp")
  file(MAKE_DIRECTORY "${tmp}")
  set_tests_properties("${pkg}/${name}" PROPERTIES
    ENVIRONMENT "TEST_TMPDIR=${tmp}"
    TIMEOUT 60
    LABELS "${pkg}")
endfunction()

function(ctxloop_files_not_built)
  _ctxloop_record_files(${ARGN})
endfunction()
