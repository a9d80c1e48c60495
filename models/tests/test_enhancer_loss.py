"""The enhancer's training options (session 22): the min-SNR weighting and starting from given weights.

* ``enhancer_loss`` against the formula written out with NumPy (per sample min(SNR, 5) + 1 times its squared error,
  then the mean over every element), tolerance 1e-6 relative; "x0" is the plain MSE; anything else is refused;
* ``train_enhancer(init=...)`` starts from the given state dicts: with a zero learning rate the saved (EMA) weights
  are the given ones, bit for bit; the logged loss is the weighted one and ``x0_mse`` the plain one beside it.
"""
import json
import os
import sys
import tempfile
import unittest

import numpy as np
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)
from models.configs_aux import build_aux_model  # noqa: E402
from models.train import common as C  # noqa: E402
from models.train import components as K  # noqa: E402


class EnhancerLossTest(unittest.TestCase):
    def test_min_snr_weights_each_sample_by_its_clipped_snr_plus_one(self):
        g = torch.Generator().manual_seed(0)
        x0, target = torch.randn(3, 4, 2, 5, 5, generator=g), torch.randn(3, 4, 2, 5, 5, generator=g)
        alpha = torch.tensor([0.998, 0.8, 0.233]).view(-1, 1, 1, 1, 1)       # SNR 118 (clipped to 5), 1.78, 0.057
        sigma = (1 - alpha ** 2).sqrt()
        err = ((x0 - target) ** 2).numpy().reshape(3, -1)
        snr = (alpha.flatten() ** 2 / sigma.flatten() ** 2).numpy()
        expected = float(np.mean((np.minimum(snr, 5.0) + 1.0)[:, None] * err))
        self.assertAlmostEqual(float(K.enhancer_loss(x0, target, alpha, sigma, "min_snr")), expected,
                               delta=1e-6 * expected)
        self.assertAlmostEqual(float(K.enhancer_loss(x0, target, alpha, sigma, "x0")), float(err.mean()), places=6)
        with self.assertRaisesRegex(ValueError, "enhancer loss must be x0 or min_snr, not 'v'"):
            K.enhancer_loss(x0, target, alpha, sigma, "v")

    def test_training_starts_from_init_and_logs_both_losses(self):
        with tempfile.TemporaryDirectory() as out:
            torch.manual_seed(1)
            torch.save(build_aux_model("vae", C.NET_CONFIG).state_dict(), os.path.join(out, "vae.pt"))
            init = {"enhancer_unet": build_aux_model("vid2vid_unet", C.NET_CONFIG).state_dict(),
                    "enhancer_text_encoder": build_aux_model("openclip_text", C.NET_CONFIG).state_dict()}
            init["enhancer_unet"] = {k: v + 0.01 for k, v in init["enhancer_unet"].items()}   # not a fresh init
            torch.save(init, os.path.join(out, "init.pt"))
            with self.assertRaisesRegex(ValueError, "not 'l1'"):
                K.train_enhancer(out, steps=2, loss="l1")
            K.train_enhancer(out, steps=2, budget_s=600, lr=0.0, batch=1, frames=2, loss="min_snr",
                             init=os.path.join(out, "init.pt"))
            final = torch.load(os.path.join(out, "enhancer.pt"))
            for role in init:
                for k, v in init[role].items():
                    self.assertTrue(torch.equal(final[role][k], v), f"{role}.{k}")
            with open(os.path.join(out, "losses.jsonl")) as f:
                rows = [json.loads(line) for line in f if '"enhancer"' in line and '"loss"' in line]
            self.assertTrue(rows)
            for r in rows:      # weights >= 1: the weighted loss is at least the plain x0 MSE
                self.assertGreaterEqual(r["loss"], r["x0_mse"] - 1e-9)


if __name__ == "__main__":
    unittest.main()
