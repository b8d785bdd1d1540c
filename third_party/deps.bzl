"""ctxloop_deps(): the external repositories ctxloop needs, all offline.

Use from ctxloop's own WORKSPACE, or from a host workspace:

    local_repository(name = "ctxloop", path = "...")   # or an archive; the
                                                       # name must be "ctxloop"
    load("@ctxloop//third_party:deps.bzl", "ctxloop_deps")
    ctxloop_deps()

Every repository is declared with maybe(), so a host that already declares
one (e.g. the real com_google_absl archive) keeps its own. The repositories
use upstream names and labels, backed by Debian packages that
tools/install_deps.sh installs:

    @com_google_absl//absl/status:statusor, ...   libabsl-dev (shared libs)
    @com_google_googletest//:gtest, :gtest_main, :gmock, :gmock_main
                                                  googletest sources, built
                                                  here (so sanitizers apply)
    @com_github_google_benchmark//:benchmark, :benchmark_main
    @libevent//:libevent, :event_pthreads
    @boost//:asio, @libuv//:libuv                 (peer benchmarks)
    @com_github_tencent_rapidjson//:rapidjson     rapidjson-dev (header-only)
    @zlib//:zlib                                  zlib1g-dev

It also provides Bazel 4.2.3's own offline needs: @rules_cc and
@remote_coverage_tools (stand-ins under third_party/) and @rules_java,
@platforms (Debian's bazel-rules-java / bazel-platforms). A host therefore
needs nothing beyond the three lines above; a host on a different Bazel may
declare those four itself first.
"""

load("@bazel_tools//tools/build_defs/repo:utils.bzl", "maybe")
load(":system_repos.bzl", "in_tree_repo", "system_absl", "system_repo")

def ctxloop_deps():
    """Declares ctxloop's external repositories (each only if not yet declared)."""

    # Bazel's own offline needs.
    maybe(in_tree_repo, name = "rules_cc", dir = "rules_cc")
    maybe(in_tree_repo, name = "remote_coverage_tools", dir = "remote_coverage_tools")
    maybe(native.local_repository, name = "rules_java", path = "/usr/share/bazel/rules/java")
    maybe(native.local_repository, name = "platforms", path = "/usr/share/bazel/tools/platforms")

    # Libraries.
    maybe(system_absl, name = "com_google_absl")
    maybe(
        system_repo,
        name = "com_google_googletest",
        build_file = Label("//third_party:googletest.BUILD"),
        debian_package = "googletest",
        required_paths = ["/usr/src/googletest/googletest/src/gtest-all.cc"],
        source_dir = "/usr/src/googletest",
    )
    maybe(
        system_repo,
        name = "com_github_google_benchmark",
        build_file = Label("//third_party:benchmark.BUILD"),
        debian_package = "libbenchmark-dev",
        required_paths = ["/usr/include/benchmark/benchmark.h"],
    )
    maybe(
        system_repo,
        name = "libevent",
        build_file = Label("//third_party:libevent.BUILD"),
        debian_package = "libevent-dev",
        required_paths = ["/usr/include/event2/event.h"],
    )
    maybe(
        system_repo,
        name = "boost",
        build_file = Label("//third_party:boost.BUILD"),
        debian_package = "libboost-dev",
        required_paths = ["/usr/include/boost/asio.hpp"],
    )
    maybe(
        system_repo,
        name = "libuv",
        build_file = Label("//third_party:libuv.BUILD"),
        debian_package = "libuv1-dev",
        required_paths = ["/usr/include/uv.h"],
    )
    maybe(
        system_repo,
        name = "com_github_tencent_rapidjson",
        build_file = Label("//third_party:rapidjson.BUILD"),
        debian_package = "rapidjson-dev",
        required_paths = ["/usr/include/rapidjson/document.h"],
    )
    maybe(
        system_repo,
        name = "zlib",
        build_file = Label("//third_party:zlib.BUILD"),
        debian_package = "zlib1g-dev",
        required_paths = ["/usr/include/zlib.h"],
    )
