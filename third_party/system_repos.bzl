"""Repository rules that expose Debian-installed libraries under upstream names.

Nothing here downloads anything: every repository is built from files that
tools/install_deps.sh installs (or, for the offline stand-ins, from
directories inside this source tree). Used by ctxloop_deps() in deps.bzl.
"""

_INSTALL_HINT = ("Run tools/install_deps.sh from the ctxloop source tree " +
                 "(it installs the Debian packages ctxloop builds against).")

def _require(rctx, path, package):
    if not rctx.path(path).exists:
        fail("ctxloop: %s is missing (Debian package %s). %s" % (path, package, _INSTALL_HINT))

def _write_workspace(rctx):
    rctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % rctx.name)

# ---------------------------------------------------------------------------
# system_repo: a repository whose BUILD file is given, optionally with the
# contents of a system source directory (e.g. /usr/src/googletest) linked in.

def _system_repo_impl(rctx):
    for path in rctx.attr.required_paths:
        _require(rctx, path, rctx.attr.debian_package)
    if rctx.attr.source_dir:
        for child in rctx.path(rctx.attr.source_dir).readdir():
            rctx.symlink(child, child.basename)
    rctx.symlink(rctx.attr.build_file, "BUILD.bazel")
    _write_workspace(rctx)

system_repo = repository_rule(
    implementation = _system_repo_impl,
    attrs = {
        "build_file": attr.label(mandatory = True, allow_single_file = True),
        "debian_package": attr.string(mandatory = True),
        "required_paths": attr.string_list(),
        "source_dir": attr.string(),
    },
    local = True,
)

# ---------------------------------------------------------------------------
# in_tree_repo: a repository made of a directory under third_party/ (the
# offline stand-ins). Resolved through a Label, so it also works when ctxloop
# is itself an external repository of a host workspace.

def _in_tree_repo_impl(rctx):
    src = rctx.path(rctx.attr._anchor).dirname.get_child(rctx.attr.dir)
    if not src.exists:
        fail("ctxloop: %s not found" % src)
    for child in src.readdir():
        rctx.symlink(child, child.basename)

in_tree_repo = repository_rule(
    implementation = _in_tree_repo_impl,
    attrs = {
        "dir": attr.string(mandatory = True),
        "_anchor": attr.label(default = Label("//third_party:BUILD.bazel")),
    },
    local = True,
)

# ---------------------------------------------------------------------------
# system_absl: @com_google_absl backed by Debian's libabsl-dev.
#
# Headers are in /usr/include (the compiler's default include path). Link
# flags and inter-library dependencies come from Abseil's own pkg-config
# files (absl_*.pc), which become targets //_pkgconfig:absl_<name>; the
# upstream labels below are aliases to them.

# Upstream package -> targets. "name" uses absl_<name>.pc; "name=pc" names
# the .pc file (without "absl_") where the upstream and CMake names differ.
# Targets whose .pc file is absent in the installed version are skipped.
_ABSL_TARGETS = {
    "absl/algorithm": ["algorithm", "container=algorithm_container"],
    "absl/base": [
        "base",
        "config",
        "core_headers",
        "dynamic_annotations",
        "endian",
        "log_severity",
        "prefetch",
    ],
    "absl/cleanup": ["cleanup"],
    "absl/container": [
        "btree",
        "fixed_array",
        "flat_hash_map",
        "flat_hash_set",
        "inlined_vector",
        "node_hash_map",
        "node_hash_set",
    ],
    "absl/debugging": [
        "failure_signal_handler",
        "leak_check",
        "stacktrace",
        "symbolize",
    ],
    "absl/flags": [
        "commandlineflag=flags_commandlineflag",
        "config=flags_config",
        "flag=flags",
        "marshalling=flags_marshalling",
        "parse=flags_parse",
        "reflection=flags_reflection",
        "usage=flags_usage",
    ],
    "absl/functional": ["any_invocable", "bind_front", "function_ref"],
    "absl/hash": ["hash"],
    "absl/memory": ["memory"],
    "absl/meta": ["type_traits"],
    "absl/numeric": ["bits", "int128", "representation=numeric_representation"],
    "absl/random": [
        "bit_gen_ref=random_bit_gen_ref",
        "distributions=random_distributions",
        "random=random_random",
        "seed_gen_exception=random_seed_gen_exception",
        "seed_sequences=random_seed_sequences",
    ],
    "absl/status": ["status", "statusor"],
    "absl/strings": ["cord", "str_format", "strings"],
    "absl/synchronization": ["synchronization"],
    "absl/time": ["time"],
    "absl/types": [
        "any",
        "bad_any_cast",
        "bad_optional_access",
        "bad_variant_access",
        "compare",
        "optional",
        "span",
        "variant",
    ],
    "absl/utility": ["utility"],
}

def _expand_vars(text, variables):
    # pkg-config ${var} references; a few rounds cover nested definitions.
    for _ in range(5):
        for key, value in variables.items():
            text = text.replace("${%s}" % key, value)
    return text

def _parse_pc(text):
    """Returns (requires, libs) of a pkg-config file."""
    variables = {}
    requires = []
    libs = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        colon = line.find(":")
        equals = line.find("=")
        if equals > 0 and (colon < 0 or equals < colon):
            variables[line[:equals].strip()] = line[equals + 1:].strip()
            continue
        if colon < 0:
            continue
        key = line[:colon].strip()
        value = _expand_vars(line[colon + 1:], variables)
        if key == "Requires":
            # "a = 1, b >= 2, c" -> [a, b, c]
            skip_next = False
            for token in value.replace(",", " ").split(" "):
                if not token:
                    continue
                if skip_next:
                    skip_next = False
                elif token in ["=", "<", ">", "<=", ">=", "!="]:
                    skip_next = True
                else:
                    requires.append(token)
        elif key == "Libs":
            for token in value.split(" "):
                # Standard library directories are searched anyway.
                if not token or token.startswith("-L/usr/lib") or token.startswith("-L/lib"):
                    continue
                libs.append(token)
    return requires, libs

def _system_absl_impl(rctx):
    _require(rctx, rctx.attr.include_dir + "/absl/base/config.h", "libabsl-dev")
    pc_dir = None
    for candidate in rctx.attr.pkgconfig_dirs:
        if rctx.path(candidate + "/absl_base.pc").exists:
            pc_dir = rctx.path(candidate)
            break
    if not pc_dir:
        fail("ctxloop: absl_base.pc not found in %s (Debian package libabsl-dev). %s" %
             (rctx.attr.pkgconfig_dirs, _INSTALL_HINT))

    # One target per absl_*.pc file.
    modules = {}
    for pc in pc_dir.readdir():
        name = pc.basename
        if name.startswith("absl_") and name.endswith(".pc"):
            modules[name[:-len(".pc")]] = _parse_pc(rctx.read(pc))
    lines = [
        "# Generated by ctxloop's system_absl rule from " + str(pc_dir) + "/absl_*.pc.",
        "package(default_visibility = [\"//:__subpackages__\"])",
        "",
    ]
    for module in sorted(modules.keys()):
        requires, libs = modules[module]
        deps = [":" + r for r in requires if r in modules]
        lines.append("cc_library(name = %r, linkopts = %r, deps = %r)" % (module, libs, deps))
    rctx.file("_pkgconfig/BUILD.bazel", "\n".join(lines) + "\n")

    # Upstream labels as aliases.
    for package, targets in _ABSL_TARGETS.items():
        lines = [
            "# Generated by ctxloop's system_absl rule (upstream-style labels).",
            "package(default_visibility = [\"//visibility:public\"])",
            "",
        ]
        for target in targets:
            name, _, module = target.partition("=")
            module = "absl_" + (module or name)
            if module in modules:
                lines.append("alias(name = %r, actual = \"//_pkgconfig:%s\")" % (name, module))
        rctx.file(package + "/BUILD.bazel", "\n".join(lines) + "\n")
    rctx.file("BUILD.bazel", "# @com_google_absl backed by Debian's libabsl-dev.\n")
    _write_workspace(rctx)

system_absl = repository_rule(
    implementation = _system_absl_impl,
    attrs = {
        "include_dir": attr.string(default = "/usr/include"),
        "pkgconfig_dirs": attr.string_list(default = [
            "/usr/lib/x86_64-linux-gnu/pkgconfig",
            "/usr/lib/aarch64-linux-gnu/pkgconfig",
            "/usr/lib/pkgconfig",
            "/usr/lib64/pkgconfig",
            "/usr/local/lib/pkgconfig",
        ]),
    },
    local = True,
)
