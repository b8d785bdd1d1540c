#!/bin/sh
# Placeholder for Bazel's coverage tools (not available offline).
echo "ctxloop: bazel coverage is not supported offline (stand-in remote_coverage_tools)" >&2
exit 1
