"""models.train.drift (session 16's stage-2 drift augmentation) and bench/quality/drift_probe.py's measure.

* ``render_drifted`` with k = 1 and no colour offset is the world's own render, bit for bit; the colour offset is
  added in proportion to the object's coverage only (background pixels unchanged), and clamped; k scales the
  object's area by k^2 (to the anti-aliased edge's accuracy).
* ``random_drift``: the drawn ranges, seeded; bad ranges raise ValueError.
* ``drift_probe.follow``: the size and colour shares on hand-made statistics against their closed forms.
"""
import dataclasses
import math
import os
import sys
import unittest

import numpy as np
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench", "quality"))
from models import world  # noqa: E402
from models.train import drift as D  # noqa: E402
from models.train import latents as L  # noqa: E402
import drift_probe as P  # noqa: E402

PROMPT = "a red circle moving to the right on a plain blue background"


def _scene():
    return world.scene_from_caption(PROMPT, np.random.default_rng(3), "core")


class RenderDriftedTest(unittest.TestCase):
    def test_no_drift_is_the_worlds_render(self):
        s = _scene()
        frames, _ = L.render_clip(s, 5, 8)
        got = D.render_drifted(s, 5, 8, 1.0, np.zeros(3))
        self.assertEqual(tuple(got.shape), (3, 8, 64, 64))
        self.assertTrue(torch.equal(got, torch.from_numpy(frames).permute(1, 0, 2, 3)))

    def test_colour_offset_follows_the_coverage_and_is_clamped(self):
        s = _scene()
        frames, masks = L.render_clip(s, 0, 4)
        delta = np.array([0.5, -0.1, 0.2])
        got = D.render_drifted(s, 0, 4, 1.0, delta).permute(1, 0, 2, 3).numpy()
        want = np.clip(frames + masks[:, None] * delta[None, :, None, None], -1, 1)
        np.testing.assert_allclose(got, want, atol=1e-6)
        bg = masks == 0
        self.assertGreater(bg.sum(), 1000)
        np.testing.assert_array_equal(got.transpose(0, 2, 3, 1)[bg], frames.transpose(0, 2, 3, 1)[bg])
        self.assertLessEqual(float(got.max()), 1.0)     # red (+1 in R) + 0.5 is clamped
        self.assertTrue(np.any(np.isclose(got[:, 0][masks == 1], 1.0)))

    def test_radius_factor_scales_the_area_by_its_square(self):
        s = _scene()
        _, m0 = L.render_clip(s, 0, 4)
        for k in (1.2, 1 / 1.2):
            grown = dataclasses.replace(s, size=s.size * k)
            frames, m1 = L.render_clip(grown, 0, 4)
            self.assertTrue(torch.equal(D.render_drifted(s, 0, 4, k, np.zeros(3)),
                                        torch.from_numpy(frames).permute(1, 0, 2, 3)))
            self.assertAlmostEqual(float(m1.sum() / m0.sum()), k * k, delta=0.03 * k * k)

    def test_bad_arguments_raise(self):
        with self.assertRaises(ValueError):
            D.render_drifted(_scene(), 0, 2, 0.0, np.zeros(3))
        with self.assertRaises(ValueError):
            D.render_drifted(_scene(), 0, 2, 1.0, np.zeros(2))


class RandomDriftTest(unittest.TestCase):
    def test_ranges_and_seed(self):
        k, d = D.random_drift(np.random.default_rng(5), 4000, 1.2, 0.15)
        self.assertEqual(k.shape, (4000,))
        self.assertEqual(d.shape, (4000, 3))
        self.assertTrue(np.all((k >= 1 / 1.2 - 1e-12) & (k <= 1.2 + 1e-12)))
        self.assertAlmostEqual(float(np.log(k).mean()), 0.0, delta=0.01)       # log-uniform about 1
        self.assertTrue(np.all(np.abs(d) <= 0.15))
        self.assertGreater(float(np.abs(d).max()), 0.14)
        k2, d2 = D.random_drift(np.random.default_rng(5), 4000, 1.2, 0.15)
        np.testing.assert_array_equal(k, k2)
        np.testing.assert_array_equal(d, d2)

    def test_bad_ranges_raise(self):
        for size, colour in ((0.9, 0.1), (1.2, -0.1)):
            with self.assertRaises(ValueError):
                D.random_drift(np.random.default_rng(0), 2, size, colour)


class FollowTest(unittest.TestCase):
    def test_shares_against_closed_form(self):
        delta = np.array([20.0, -10.0, 5.0])
        true = (100.0, np.array([200.0, 40.0, 30.0]))
        # kept all the drift: area x k^2, colour + delta
        s, c = P.follow(true, (144.0, true[1] + delta), 1.2, delta)
        self.assertAlmostEqual(s, 1.0, places=9)
        self.assertAlmostEqual(c, 1.0, places=9)
        # back to the true object
        s, c = P.follow(true, true, 1.2, delta)
        self.assertEqual((s, c), (0.0, 0.0))
        # half the drift in log area; a quarter of the colour; an orthogonal colour change counts 0
        orth = np.array([1.0, 2.0, 0.0])
        self.assertAlmostEqual(float(orth @ delta), 0.0)
        s, c = P.follow(true, (100.0 * 1.2, true[1] + 0.25 * delta + 7 * orth), 1.2, delta)
        self.assertAlmostEqual(s, 0.5, places=9)
        self.assertAlmostEqual(c, 0.25, places=9)
        self.assertEqual(P.follow((None, None), true, 1.2, delta), (None, None))

    def test_object_stats_on_a_true_render(self):
        s = _scene()
        frames, masks = L.render_clip(s, 0, 4)
        u8 = ((frames.transpose(0, 2, 3, 1) + 1) * 127.5).round().astype(np.uint8)
        area, colour = P.object_stats(u8, PROMPT)
        self.assertAlmostEqual(area / float(masks.sum() / 4), 1.0, delta=0.1)
        self.assertGreater(colour[0], 200)      # red
        self.assertLess(max(colour[1], colour[2]), 80)
        self.assertTrue(math.isfinite(area))


if __name__ == "__main__":
    unittest.main()
