"""Diffusion UNets wider than the config's (session 18: ``models.train.all --unet-channels``), end to end:

* ``configs_unet.with_widths`` / ``widths_of``: the widths a state dict was built with come back from it, and
  widths the config cannot build (a GroupNorm or head width that does not divide them, a wrong count) are
  refused with a message naming the rule;
* training: ``stage1`` builds the wider UNet, ``stage1_centred`` continues it at its own width (with the
  shape-pair loss of ``shape_pair.py`` in its step, as in stage 2's), a continuation
  asked for a width is refused, stage 2 (base UNet and CAM) is built at the width of the stage-1 UNet it starts
  from, and weights of another width are refused with both widths named;
* export: a ``weights.pt`` holding both wider UNets exports (TorchScript checked against eager by the exporter)
  and the TorchScript runs at the manifest's shapes with the wider parameter counts.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from dataclasses import replace

import torch

from models.configs_unet import TINY, widths_of, with_widths
from models.export import export_directory
from models.export_components import build_random
from models.train import stages as S
from models.stage2 import Stage2UNet
from models.unet3d import UNet3DConditionModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WIDE = (32, 32, 64, 64)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _train(out: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "models.train.all", "--out", out, "--steps-scale", "0.002", "--clips", "6",
           "--budget-minutes", "10", "--recipe", "3", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)


class Widths(unittest.TestCase):
    def test_widths_come_back_from_the_state_dict(self):
        for chans in (TINY.unet.block_out_channels, WIDE, (24, 24, 48, 48)):
            unet = UNet3DConditionModel(with_widths(TINY.unet, chans))
            self.assertEqual(widths_of(TINY.unet, unet.state_dict()).block_out_channels, chans)
        # 4x the parameters at twice the width (convolutions and attention are quadratic in it)
        n = [sum(p.numel() for p in UNet3DConditionModel(with_widths(TINY.unet, c)).parameters())
             for c in (TINY.unet.block_out_channels, WIDE)]
        self.assertGreater(n[1], 3.5 * n[0])

    def test_unbuildable_widths_are_refused_by_name(self):
        with self.assertRaisesRegex(ValueError, "multiples of 8 .* 30 is not"):
            with_widths(TINY.unet, (30, 32, 64, 64))
        with self.assertRaisesRegex(ValueError, "expected 4 block widths, got 3"):
            with_widths(TINY.unet, (32, 64, 64))
        with self.assertRaisesRegex(ValueError, "not a UNet3DConditionModel state dict"):
            widths_of(TINY.unet, {"conv_in.weight": torch.zeros(16, 4, 3, 3)})

    def test_cli_refuses_bad_widths_with_exit_2(self):
        with tempfile.TemporaryDirectory() as out:
            for bad, said in (("30,32,64,64", "30 is not"), ("a,b", "invalid literal")):
                r = _train(out, "--only", "stage1", "--unet-channels", bad)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(f"--unet-channels '{bad}'", r.stderr)
                self.assertIn(said, r.stderr)

    def test_a_continuation_keeps_the_width_it_continues(self):
        with self.assertRaisesRegex(ValueError, "stage1_centred continues one and keeps its width"):
            S.train_stage1("/nonexistent", more=True, centred=True, channels=WIDE)


class WideUNetsEndToEnd(unittest.TestCase):
    def test_train_continue_refuse_stage2_and_export(self):
        with tempfile.TemporaryDirectory() as out:
            r = _train(out, "--only", "vae", "--steps", "vae=2")        # the latents need an encoder
            self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
            for k in (0, 1):
                for kind in ([], ["--centred"]):
                    subprocess.run([sys.executable, "-m", "models.train.latents", "--out", out, "--part",
                                    f"{k}/2", "--clips", "6", *kind], cwd=ROOT, check=True, capture_output=True,
                                   timeout=300, env=ENV)
            r = _train(out, "--only", "stage1", "--unet-channels", ",".join(map(str, WIDE)),
                       "--steps", "stage1=2")
            self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
            # the continuation also runs the shape- and direction-pair losses (shape_pair.py) inside the real
            # training step
            r = _train(out, "--only", "stage1_centred", "--steps", "stage1_centred=2", "--shape-pair-p", "1",
                       "--shape-pair-weight", "20", "--dir-pair-p", "1", "--dir-pair-weight", "5")
            self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
            with open(os.path.join(out, "losses.jsonl")) as f:
                logged = [json.loads(line) for line in f if '"stage1_centred"' in line and '"loss"' in line]
            self.assertTrue(logged and all(d["pairs"] >= 1 and d["pair"] > 0 for d in logged), logged)
            self.assertTrue(all(d["dir_pairs"] == 8 and d["dir_pair"] > 0 for d in logged), logged)
            for name in ("stage1", "stage1_centred"):
                sd = torch.load(os.path.join(out, f"{name}.pt"))["unet_stage1"]
                self.assertEqual(widths_of(TINY.unet, sd).block_out_channels, WIDE, name)
            # from stage1.pt (--stage2-base), with stage 2's shape-pair loss (partner frames, anchor, caption)
            r = _train(out, "--only", "stage2", "--steps", "stage2=2", "--shape-pair-p", "1",
                       "--shape-pair-weight", "20")
            self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
            with open(os.path.join(out, "losses.jsonl")) as f:
                logged = [json.loads(line) for line in f if '"stage2"' in line and '"loss"' in line]
            self.assertTrue(logged and all(d["pairs"] >= 1 and d["pair"] > 0 for d in logged), logged)
            stage2 = torch.load(os.path.join(out, "stage2.pt"))
            self.assertEqual(widths_of(TINY.unet, stage2["unet_stage2"], "base_model.").block_out_channels, WIDE)
            self.assertEqual(stage2["unet_stage2"]["cam.conv_in.weight"].shape[0], WIDE[0])    # the CAM's copy too
            with self.assertRaisesRegex(ValueError, r"block widths \(32, 32, 64, 64\), the stage-1 UNet stage 2 "
                                                    r"starts from \(16, 16, 32, 32\)"):
                S._check_same_widths(TINY.unet, stage2["unet_stage2"], "base_model.", "stage2.pt")

            # every other role random (seed 0), the trained wide UNets in place of the tiny ones
            wide = torch.load(os.path.join(out, "stage1_centred.pt"))["unet_stage1"]
            weights = {role: make().state_dict() for role, make in build_random("tiny", 0).items()}
            weights.update(unet_stage1=wide, unet_stage2=stage2["unet_stage2"],
                           apm_image_encoder=stage2["apm_image_encoder"])
            torch.save(weights, os.path.join(out, "weights.pt"))
            exported = os.path.join(out, "export")
            export_directory(exported, "tiny", weights_file=os.path.join(out, "weights.pt"), verify=True,
                             log=lambda *a: None, prediction_type="v_prediction")
            with open(os.path.join(exported, "manifest.json")) as f:
                entries = {c["role"]: c for c in json.load(f)["components"]}
            s2 = Stage2UNet(replace(TINY, unet=with_widths(TINY.unet, WIDE)))
            s2.load_state_dict(stage2["unet_stage2"])
            self.assertEqual(entries["unet_stage2"]["parameters"], sum(p.numel() for p in s2.parameters()))
            entry = entries["unet_stage1"]
            eager = UNet3DConditionModel(with_widths(TINY.unet, WIDE)).eval()
            eager.load_state_dict(wide)
            self.assertEqual(entry["parameters"], sum(p.numel() for p in eager.parameters()))
            loaded = torch.jit.load(os.path.join(exported, "unet_stage1.pt"))
            g = torch.Generator().manual_seed(3)
            z, ctx = torch.randn(2, 4, 16, 8, 8, generator=g), torch.randn(2, 77, 64, generator=g)
            t = torch.tensor([10.0, 900.0])
            with torch.no_grad():
                got, want = loaded(z, t, ctx), eager(z, t, ctx)
            self.assertEqual(tuple(got.shape), (2, 4, 16, 8, 8))
            self.assertLess(float((got - want).abs().max()), 1e-5)


if __name__ == "__main__":
    unittest.main()
