#!/usr/bin/env python3
"""Self-test of tools/icount_guard.py's comparison (no valgrind, no build).

Runs the guard on fixed measured figures (--results) against fake baselines
and checks its verdict: a baseline 20% lower than the measurement must fail,
the same or a higher baseline must pass, a rise just over the threshold must
fail and one just under must pass, missing operations on either side must
fail, and --update must write a baseline that then passes.

    python3 tools/icount_guard_test.py      (also: bazel test //tools:all)
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import icount_guard  # noqa: E402

MEASURED = {
    "post_same_thread": 240.0,
    "context_key_get": 140.0,
    "span_start_finish": 2000.0,
}


class GuardTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.results = self.path("results.json")
        self.write(self.results, {"n": 2000, "instructions_per_op": MEASURED})

    def tearDown(self):
        self.dir.cleanup()

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def write(self, path, doc):
        with open(path, "w") as f:
            json.dump(doc, f)

    def run_guard(self, baseline_ops, *extra):
        baseline = self.path("baseline.json")
        if baseline_ops is not None:
            self.write(baseline, {"n": 2000, "instructions_per_op": baseline_ops})
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = icount_guard.main(["--results", self.results,
                                    "--baseline", baseline] + list(extra))
        return rc, err.getvalue()

    def scaled(self, factor, ops=MEASURED):
        return {op: v * factor for op, v in ops.items()}

    def test_baseline_20_percent_lower_fails(self):
        rc, err = self.run_guard(self.scaled(0.8))
        self.assertEqual(rc, 1, err)
        self.assertIn("FAIL post_same_thread", err)

    def test_one_operation_20_percent_lower_fails_only_it(self):
        base = dict(MEASURED)
        base["context_key_get"] = MEASURED["context_key_get"] * 0.8
        rc, err = self.run_guard(base)
        self.assertEqual(rc, 1, err)
        self.assertIn("FAIL context_key_get", err)
        self.assertNotIn("FAIL post_same_thread", err)

    def test_equal_baseline_passes(self):
        rc, err = self.run_guard(dict(MEASURED))
        self.assertEqual(rc, 0, err)

    def test_higher_baseline_passes_with_note(self):
        rc, err = self.run_guard(self.scaled(1.5))
        self.assertEqual(rc, 0, err)
        self.assertIn("consider --update", err)

    def test_threshold_edges(self):
        # Measured 240 against 240/1.11 (an 11% rise): fails; 240/1.09: passes.
        rc, _ = self.run_guard(self.scaled(1 / 1.11))
        self.assertEqual(rc, 1)
        rc, _ = self.run_guard(self.scaled(1 / 1.09))
        self.assertEqual(rc, 0)
        # A custom threshold moves the edge.
        rc, _ = self.run_guard(self.scaled(1 / 1.11), "--threshold", "0.2")
        self.assertEqual(rc, 0)

    def test_operation_without_baseline_fails(self):
        base = dict(MEASURED)
        del base["span_start_finish"]
        rc, err = self.run_guard(base)
        self.assertEqual(rc, 1, err)
        self.assertIn("span_start_finish: no baseline", err)

    def test_baseline_operation_not_measured_fails(self):
        base = dict(MEASURED)
        base["gone_op"] = 10.0
        rc, err = self.run_guard(base)
        self.assertEqual(rc, 1, err)
        self.assertIn("gone_op: in the baseline but not measured", err)

    def test_missing_baseline_file_is_an_error(self):
        rc, _ = self.run_guard(None)
        self.assertEqual(rc, 2)

    def test_update_writes_a_passing_baseline(self):
        rc, err = self.run_guard(self.scaled(0.5), "--update")
        self.assertEqual(rc, 0, err)
        with open(self.path("baseline.json")) as f:
            doc = json.load(f)
        self.assertEqual(doc["instructions_per_op"], MEASURED)
        out, err2 = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err2):
            rc = icount_guard.main(["--results", self.results, "--baseline",
                                    self.path("baseline.json")])
        self.assertEqual(rc, 0, err2.getvalue())

    def test_compare_directly(self):
        failures, notes = icount_guard.compare({"a": 100}, {"a": 111}, 0.10)
        self.assertEqual(len(failures), 1)
        failures, notes = icount_guard.compare({"a": 100}, {"a": 110}, 0.10)
        self.assertEqual(failures, [])
        failures, notes = icount_guard.compare({"a": 100}, {"a": 80}, 0.10)
        self.assertEqual(failures, [])
        self.assertEqual(len(notes), 1)


if __name__ == "__main__":
    unittest.main()
