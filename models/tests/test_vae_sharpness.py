"""Session 17's VAE training terms and bench/quality/vae_probe.py's measures.

* ``components.edge_l1``: 0 for an exact copy and for a copy shifted by a constant (it compares differences); on
  hand-made images it equals the weighted mean of |difference of differences| written out with numpy loops.
* ``components.jitter_objects``: background pixels unchanged, object pixels moved by one offset per frame and
  channel in proportion to the coverage, inside [-1, 1] and inside the drawn range; amount 0 is the identity.
* ``vae_probe``: the colour gain is the slope of output change on input change: 1 for an identity "VAE", 0.5 for
  one that halves every pixel, 0 for a constant one;
  the shape separation of the identity equals the pixel separation; ``read_squares`` reads a true square as one.
"""
import os
import sys
import unittest

import numpy as np
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench", "quality"))
from models.train import common as C  # noqa: E402
from models.train import components as K  # noqa: E402
import vae_probe as P  # noqa: E402


class EdgeL1Test(unittest.TestCase):
    def test_zero_for_copy_and_constant_shift(self):
        x = torch.rand(2, 3, 9, 7) * 2 - 1
        w = torch.ones(2, 1, 9, 7)
        self.assertEqual(float(K.edge_l1(x.clone(), x, w)), 0.0)
        self.assertLess(float(K.edge_l1(x + 0.3, x, w)), 1e-6)

    def test_against_loops(self):
        g = torch.Generator().manual_seed(0)
        x, r = (torch.rand(1, 3, 5, 6, generator=g) for _ in range(2))
        w = 1 + 4 * (torch.rand(1, 1, 5, 6, generator=g) > 0.5).float()
        xn, rn, wn = x[0].numpy(), r[0].numpy(), w[0, 0].numpy()
        want = 0.0
        for axis in (0, 1):          # rows (H), then columns (W)
            num = den = 0.0
            cnt = 0
            for c in range(3):
                for i in range(5 - (axis == 0)):
                    for j in range(6 - (axis == 1)):
                        i2, j2 = (i + 1, j) if axis == 0 else (i, j + 1)
                        ww = max(wn[i, j], wn[i2, j2])
                        num += abs((rn[c, i2, j2] - rn[c, i, j]) - (xn[c, i2, j2] - xn[c, i, j])) * ww
                        den += ww
                        cnt += 1
            want += (num / cnt) / (den / cnt)
        self.assertAlmostEqual(float(K.edge_l1(r, x, w)), want, places=5)


class JitterTest(unittest.TestCase):
    def test_offsets_follow_coverage(self):
        rng = np.random.default_rng(2)
        x, m = C.world_frames_masks(rng, 4, 64)
        got = K.jitter_objects(np.random.default_rng(9), x, m, 0.3)
        d = np.random.default_rng(9).uniform(-0.3, 0.3, size=(4, 3, 1, 1)).astype(np.float32)
        want = (x + m * torch.from_numpy(d)).clamp(-1, 1)
        self.assertTrue(torch.allclose(got, want))
        bg = (m == 0).expand_as(x)
        self.assertTrue(torch.equal(got[bg], x[bg]))
        self.assertLessEqual(float((got - x).abs().max()), 0.3 + 1e-6)
        self.assertGreater(float((got - x).abs().max()), 0.01)
        self.assertTrue(torch.equal(K.jitter_objects(rng, x, m, 0.0), x))


class VaeProbeTest(unittest.TestCase):
    def test_identity_and_colour_blind_vaes(self):
        ident = P.probe(lambda x: x.clone(), lambda z: z.clone(), n=6)
        self.assertAlmostEqual(ident["colour_gain"], 1.0, places=3)
        self.assertEqual(ident["l1"], 0.0)
        self.assertEqual(ident["latent_shape_sep"], ident["pixel_shape_sep"])
        self.assertEqual(ident["square_vae"], ident["square_render"])
        # the gain is a slope: a "VAE" that halves every pixel keeps half of the offset, a constant one none
        half = P.probe(lambda x: x.clone(), lambda z: 0.5 * z, n=6)
        self.assertAlmostEqual(half["colour_gain"], 0.5, places=3)
        blind = P.probe(lambda x: x.clone(), lambda z: torch.zeros_like(z), n=6)
        self.assertEqual(blind["colour_gain"], 0.0)

    def test_true_square_reads_as_square(self):
        out = P.probe(lambda x: x, lambda z: z, n=6)
        self.assertGreaterEqual(out["square_render"][0], 0.95)
        self.assertEqual(out["square_render"][1], 1.0)
        self.assertEqual(out["circle_vae"][1], 0.0)


if __name__ == "__main__":
    unittest.main()
