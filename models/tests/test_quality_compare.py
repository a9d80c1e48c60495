"""bench/quality/compare.py: the paired, prompt-clustered bootstrap behind "clearly below" in the issue-6 targets.

* ``bootstrap_means`` against the exact bootstrap distribution, enumerated over every one of the n^n equally likely
  draws of a small set of clusters of unequal size (tolerance 0.01 on the distribution function; the Monte Carlo
  error of 40000 resamples is about 0.0025);
* a constant difference gives a zero-width interval at that difference, symmetric differences an interval around 0
  and no verdict, and the verdict respects which direction is better;
* pairs are matched by prompt, whatever the order of the rows; several files pool by prompt (one cluster a prompt);
* files, tags and prompt sets that cannot be compared are refused with a message that names them (exit 2).
"""
import contextlib
import io
import itertools
import json
import os
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "quality"))
import compare  # noqa: E402


def row(prompt, drift=10.0, size=1.0, ok=(1, 1, 1), cuts=0, turns=0.0, dturns=0.0, tone=2.0):
    return {"prompt": prompt, "colour_drift": drift, "size_ratio": size, "colour_ok": ok[0], "shape_ok": ok[1],
            "dir_ok": ok[2], "cuts": cuts, "colour_turns": turns, "dir_turns": dturns, "seam_tone": tone}


def write_metrics(d, name, runs):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        json.dump({"summary": {}, "videos": runs}, f)
    return path


def run_main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = compare.main(argv)
    return code, out.getvalue(), err.getvalue()


class BootstrapTest(unittest.TestCase):
    def test_matches_the_exact_bootstrap_distribution_of_clusters_of_unequal_size(self):
        clusters = [[1.0], [2.0, 4.0], [-3.0], [0.5, 0.5, 6.0]]
        n = len(clusters)
        exact = []                      # every draw of n clusters with replacement is equally likely
        for draw in itertools.product(range(n), repeat=n):
            vals = [v for k in draw for v in clusters[k]]
            exact.append(sum(vals) / len(vals))
        exact = np.array(exact)
        boot = compare.bootstrap_means(clusters, 40000, seed=3)
        for x in np.quantile(exact, [0.05, 0.2, 0.5, 0.8, 0.95]):
            self.assertAlmostEqual(float((boot <= x).mean()), float((exact <= x).mean()), delta=0.01, msg=f"at {x}")
        self.assertAlmostEqual(float(boot.mean()), float(exact.mean()), delta=0.02)

    def test_is_seeded(self):
        a = compare.bootstrap_means([[1.0], [2.0], [5.0]], 100, seed=7)
        b = compare.bootstrap_means([[1.0], [2.0], [5.0]], 100, seed=7)
        np.testing.assert_array_equal(a, b)

    def test_refuses_empty_clusters_and_no_resamples(self):
        with self.assertRaisesRegex(compare.CompareError, "at least one value"):
            compare.bootstrap_means([[1.0], []], 10, 0)
        with self.assertRaisesRegex(compare.CompareError, "positive number of resamples but received 0"):
            compare.bootstrap_means([[1.0]], 0, 0)


class CompareTest(unittest.TestCase):
    prompts = [f"a red circle moving {k}" for k in range(20)]

    def pairs(self, a, b):
        return compare.pair_rows(a, b, "test")

    def test_a_constant_difference_is_clear_and_its_interval_is_that_difference(self):
        a = [row(p, drift=10.0 + k) for k, p in enumerate(self.prompts)]
        b = [row(p, drift=15.0 + k) for k, p in enumerate(self.prompts)]
        res = compare.compare_metric(self.pairs(a, b), lambda r: r["colour_drift"], 2000, 0)
        self.assertEqual(res["ci95"], [-5.0, -5.0])
        self.assertEqual((res["a_lower"], res["b_lower"], res["ties"]), (20, 0, 0))
        self.assertEqual(compare.verdict(res, higher_better=False), "A clearly better")
        self.assertEqual(compare.verdict(res, higher_better=True), "B clearly better")

    def test_symmetric_differences_give_an_interval_around_zero_and_no_verdict(self):
        a = [row(p, drift=10.0 + (1 if k % 2 else -1)) for k, p in enumerate(self.prompts)]
        b = [row(p, drift=10.0) for p in self.prompts]
        res = compare.compare_metric(self.pairs(a, b), lambda r: r["colour_drift"], 4000, 0)
        self.assertLess(res["ci95"][0], 0)
        self.assertGreater(res["ci95"][1], 0)
        self.assertEqual(compare.verdict(res, False), "no clear difference")

    def test_rows_are_matched_by_prompt_not_by_position(self):
        a = [row(p, drift=float(k)) for k, p in enumerate(self.prompts)]
        b = list(reversed([row(p, drift=float(k) + 2) for k, p in enumerate(self.prompts)]))
        res = compare.compare_metric(self.pairs(a, b), lambda r: r["colour_drift"], 500, 0)
        self.assertEqual(res["diff"], -2.0)
        self.assertEqual(res["ci95"], [-2.0, -2.0])

    def test_size_error_and_adherence_per_video(self):
        values = dict((name, fn) for name, fn, _ in compare.METRICS)
        self.assertAlmostEqual(values["size_error"](row("p", size=0.5)), np.log(2.0))
        self.assertAlmostEqual(values["size_error"](row("p", size=2.0)), np.log(2.0))
        self.assertTrue(np.isnan(values["size_error"](row("p", size=0.0))))
        self.assertAlmostEqual(values["adherence"](row("p", ok=(1, 0, 1))), 2 / 3)


class MainTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        prompts = [f"a blue square moving {k}" for k in range(6)]
        self.s1 = write_metrics(self.dir.name, "s1.json", {
            "full": [row(p, drift=5.0 + k) for k, p in enumerate(prompts)],
            "noapm": [row(p, drift=9.0 + k, ok=(1, 0, 1)) for k, p in enumerate(prompts)]})
        self.s2 = write_metrics(self.dir.name, "s2.json", {
            "full": [row(p, drift=6.0 + k) for k, p in enumerate(prompts)],
            "noapm": [row(p, drift=8.0 + k) for k, p in enumerate(prompts)]})

    def test_two_seeds_pool_by_prompt_and_the_table_and_json_say_so(self):
        out_json = os.path.join(self.dir.name, "cmp.json")
        code, out, err = run_main([f"{self.s1}:full", f"{self.s1}:noapm", f"{self.s2}:full", f"{self.s2}:noapm",
                                   "--resamples", "1000", "--json", out_json])
        self.assertEqual((code, err), (0, ""))
        self.assertIn("12 paired videos", out)
        self.assertIn("| colour_drift | 12 | 8 | 11 | -3 | [-3, -3] | 12 / 0 / 0 | A clearly better |", out)
        with open(out_json) as f:
            res = json.load(f)["metrics"]
        self.assertEqual(res["colour_drift"]["prompts"], 6)
        self.assertEqual(res["adherence"]["verdict"], "A clearly better")      # 1 against 5/6 (B's shape wrong)
        self.assertEqual(res["cuts"]["verdict"], "no clear difference")

    def test_inputs_that_cannot_be_compared_exit_2_naming_the_problem(self):
        other = write_metrics(self.dir.name, "other.json", {"full": [row("a green circle moving up")]})
        cases = [
            ([f"{self.s1}:full"], "runs come in pairs"),
            ([f"{self.s1}:full", f"{self.s1}:nope"], "has no run 'nope'; it has ['full', 'noapm']"),
            ([f"{self.s1}:full", self.s1], "expected FILE:TAG"),
            ([f"{self.s1}:full", os.path.join(self.dir.name, "missing.json") + ":full"], "cannot read"),
            ([f"{self.s1}:full", f"{other}:full"], "different prompts (only in A: ['a blue square moving 0'"),
        ]
        for argv, message in cases:
            code, out, err = run_main(argv)
            self.assertEqual(code, 2, argv)
            self.assertIn(message, err, argv)
            self.assertEqual(out, "", argv)

    def test_a_prompt_twice_in_one_run_is_refused(self):
        twice = write_metrics(self.dir.name, "twice.json", {"x": [row("p"), row("p")], "y": [row("p")]})
        code, _, err = run_main([f"{twice}:x", f"{twice}:y"])
        self.assertEqual(code, 2)
        self.assertIn("has the prompt 'p' twice", err)


if __name__ == "__main__":
    unittest.main()
