"""models.train.from_export (a training directory rebuilt from an exported model directory) and models.train.tone
(the stage-2 tone augmentation of session 10).

* The round trip on the shipped ``models/default``: from_export, then ``components.collect_weights`` (what
  ``models.train.all --collect`` writes for the exporter) gives back every role's tensors bit for bit.
* Refusals: a directory without a manifest, files already in the way, enhancer VAE weights that differ from the
  VAE's (the recipe shares one VAE): a FromExportError naming the problem, and exit status 2 from the command.
* tone: the transform against its closed form on a hand-made tensor, the clamp, the drawn ranges.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)
from models.train import components as K  # noqa: E402
from models.train import from_export as FE  # noqa: E402
from models.train import tone as T  # noqa: E402

DEFAULT = os.path.join(ROOT, "models", "default")


class FromExportTest(unittest.TestCase):
    def test_collect_after_from_export_gives_back_every_shipped_tensor(self):
        shipped = FE.role_weights(DEFAULT)
        with tempfile.TemporaryDirectory() as out:
            written = FE.build(DEFAULT, out)
            self.assertEqual(sorted(written), ["enhancer.pt", "stage1.pt", "stage2.pt", "vae.pt"])
            collected = K.collect_weights(out)
        self.assertEqual(sorted(collected), sorted(shipped))       # all ten roles
        for role, sd in shipped.items():
            self.assertEqual(sorted(collected[role]), sorted(sd), role)
            for k, v in sd.items():
                self.assertTrue(torch.equal(collected[role][k], v), f"{role}.{k}")

    def test_refusals_name_the_problem(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(FE.FromExportError, "no manifest.json"):
                FE.build(tmp, os.path.join(tmp, "out"))
            out = os.path.join(tmp, "out")
            os.makedirs(out)
            open(os.path.join(out, "stage2.pt"), "w").close()
            with self.assertRaisesRegex(FE.FromExportError, r"stage2\.pt already there"):
                FE.build(DEFAULT, out)
            # a model directory whose enhancer VAE is not the VAE: the tiny random-weight one
            with self.assertRaisesRegex(FE.FromExportError, "enhancer_vae_encoder vs vae_encoder: tensor .* differs"):
                FE.build(os.path.join(ROOT, "models", "tiny"), os.path.join(tmp, "out2"))
            r = subprocess.run([sys.executable, "-m", "models.train.from_export", "--model", tmp, "--out",
                                os.path.join(tmp, "out3")], cwd=ROOT, capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("no manifest.json", r.stderr)


class ToneTest(unittest.TestCase):
    def test_apply_tone_is_gain_times_pixel_plus_offset_per_window_and_channel_clamped(self):
        video = torch.linspace(-1, 1, 2 * 3 * 2 * 2 * 2).view(2, 3, 2, 2, 2)
        g = torch.tensor([[1.0, 0.5, 1.1], [0.9, 1.0, 1.0]])
        o = torch.tensor([[0.0, 0.1, -0.2], [0.12, 0.0, 0.5]])
        got = T.apply_tone(video, g, o)
        for b in range(2):
            for c in range(3):
                want = np.clip(video[b, c].numpy() * g[b, c].item() + o[b, c].item(), -1, 1)
                np.testing.assert_allclose(got[b, c].numpy(), want, atol=1e-6)
        self.assertEqual(float(got.max()), 1.0)          # window 1, channel 2: 0.5 offset pushes the top past 1
        with self.assertRaisesRegex(ValueError, r"video \[B,3,F,H,W\]"):
            T.apply_tone(video[:, :2], g, o)

    def test_random_tone_draws_within_the_stated_ranges_and_is_seeded(self):
        g, o = T.random_tone(np.random.default_rng(5), 4000)
        self.assertEqual(tuple(g.shape), (4000, 3))
        self.assertTrue(bool((g >= 1 - T.GAIN).all() and (g <= 1 + T.GAIN).all()))
        self.assertTrue(bool((o.abs() <= T.OFFSET).all()))
        self.assertAlmostEqual(float(o.std()), T.OFFSET / 3 ** 0.5, delta=0.005)     # U(-a, a): std a / sqrt(3)
        g2, o2 = T.random_tone(np.random.default_rng(5), 4000)
        self.assertTrue(torch.equal(g, g2) and torch.equal(o, o2))
        with self.assertRaisesRegex(ValueError, "tone gain must be in"):
            T.random_tone(np.random.default_rng(0), 1, gain=1.5)


if __name__ == "__main__":
    unittest.main()
