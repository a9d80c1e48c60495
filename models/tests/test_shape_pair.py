"""The shape- and direction-pair losses (models/train/shape_pair.py; sessions 18-20) against closed forms and direct renders:

* with a shared noise, a predictor that knows each half's z0 has zero pair loss, and the all-zero v predictor
  (x̂0 = α z_t) leaves exactly (1 - α²)(z0_a - z0_b) in every cell (the noise cancels in the difference);
* partners are the same clip frames, rendered straight from the world with the other shape, at the window's
  own start and offset, encoded by the given encoder, with the caption's shape word swapped;
* only square and circle windows are paired; bad shares, weights and captions are refused by name;
* direction pairs (session 20): the partner has the object where the window has it at its first frame and moves
  it the opposite way at the same speed, rendered and encoded as above, the caption's direction swapped; every
  window can be paired; ``t_from`` draws the pair's timesteps from there to 999.
"""
import dataclasses
import os
import subprocess
import sys
import tempfile
import unittest
from types import SimpleNamespace

import numpy as np
import torch

from models import world
from models.configs_aux import build_aux_model
from models.train import common as C
from models.train import shape_pair as SP
from models.train import stages as S

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _scenes(shapes, seed=5):
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        s = world.scene_from_caption(f"a red {shape} moving to the right on a plain blue background", rng, "core")
        out.append(s)
    return out


class PairLoss(unittest.TestCase):
    def setUp(self):
        g = torch.Generator().manual_seed(0)
        self.za, self.zb = torch.randn(3, 4, 16, 8, 8, generator=g), torch.randn(3, 4, 16, 8, 8, generator=g)
        self.w = 1.0 + 3.0 * (torch.rand(3, 1, 16, 8, 8, generator=g) > 0.7).float()
        self.ctx = torch.zeros(3, 77, 8), torch.ones(3, 77, 8)
        self.ac = C.ddpm_alphas_cumprod()

    def test_a_predictor_that_knows_both_clips_has_zero_loss(self):
        z0 = torch.cat([self.za, self.zb])

        def exact(zt, t, ctx):       # v whose x0 estimate alpha z_t - sigma v is each half's own z0
            a = self.ac[t.long()].view(-1, 1, 1, 1, 1)
            return (a.sqrt() * zt - z0) / (1 - a).sqrt()
        loss = SP.pair_loss(exact, self.za, self.zb, self.w, *self.ctx, self.ac)
        self.assertLess(float(loss), 1e-9)

    def test_the_zero_predictor_leaves_one_minus_alpha_squared_of_the_difference(self):
        torch.manual_seed(7)
        loss = SP.pair_loss(lambda zt, t, ctx: torch.zeros_like(zt), self.za, self.zb, self.w, *self.ctx, self.ac)
        torch.manual_seed(7)        # the same t as pair_loss drew
        a = self.ac[torch.randint(0, self.ac.numel(), (3,))].view(-1, 1, 1, 1, 1)
        want = (((1 - a) * (self.za - self.zb)) ** 2 * self.w).sum() / self.w.expand_as(self.za).sum()
        self.assertAlmostEqual(float(loss), float(want), places=5)


    def test_t_from_draws_the_pairs_timesteps_from_there_on(self):
        loss = SP.pair_loss(lambda zt, t, ctx: torch.zeros_like(zt), self.za, self.zb, self.w, *self.ctx, self.ac,
                            t_from=999)
        a = self.ac[999]
        want = (((1 - a) * (self.za - self.zb)) ** 2 * self.w).sum() / self.w.expand_as(self.za).sum()
        self.assertAlmostEqual(float(loss), float(want), places=5)
        seen = []
        SP.pair_loss(lambda zt, t, ctx: seen.append(t) or torch.zeros_like(zt), self.za, self.zb, self.w, *self.ctx,
                     self.ac, t_from=700)
        self.assertTrue(bool((seen[0] >= 700).all()))
        with self.assertRaisesRegex(ValueError, "t_from must be in"):
            SP.pair_loss(lambda zt, t, ctx: zt, self.za, self.zb, self.w, *self.ctx, self.ac, t_from=1000)


class Partners(unittest.TestCase):
    def test_partners_are_the_same_frames_with_the_other_shape(self):
        scenes = _scenes(["square", "circle", "triangle"])
        data = SimpleNamespace(scenes=scenes, starts=[3, 10, 0], pre=None)
        vae = build_aux_model("vae", "tiny").eval()
        enc = vae.video_encoder()
        ids, offs = np.array([1, 0, 2]), np.array([5, 0, 2])
        z, w, caps, pixels = SP.partners(data, enc, ids, offs, [0, 1])
        anchors = SP.partner_anchors(data, ids, [0, 1])
        for row, (j, want_shape) in enumerate([(0, "square"), (1, "circle")]):
            s = scenes[ids[j]]
            other = dataclasses.replace(s, shape=want_shape)
            self.assertEqual(caps[row], SP.swap_shape(world.caption(s), s.shape))
            self.assertIn(f" {want_shape} ", caps[row])
            frames = [world.render_frame_and_mask(other, data.starts[ids[j]] + offs[j] + k, 64) for k in range(16)]
            video = torch.from_numpy(np.stack([f for f, _ in frames])).permute(1, 0, 2, 3)[None]
            with torch.no_grad():
                want = enc(video)[0][0]
            self.assertLess(float((z[row] - want).abs().max()), 1e-5)
            self.assertTrue(torch.equal(pixels[row], video[0]))        # stage 2's partner conditioning frames
            self.assertTrue(torch.equal(anchors[row], torch.from_numpy(world.render_frame(other, 0, 64))))
            mask = torch.from_numpy(np.stack([m for _, m in frames])).float()
            cells = torch.nn.functional.max_pool2d(mask[:, None], 8)[:, 0]      # [16, 8, 8]
            self.assertTrue(torch.equal(w[row, 0], 1.0 + 3.0 * cells))

    def test_direction_partners_turn_back_at_the_windows_first_frame(self):
        scenes = _scenes(["square", "triangle"])
        scenes[1] = dataclasses.replace(scenes[1], direction="up")
        data = SimpleNamespace(scenes=scenes, starts=[3, 10], pre=None)
        enc = build_aux_model("vae", "tiny").eval().video_encoder()
        ids, offs = np.array([1, 0]), np.array([0, 4])
        z, w, caps, pixels = SP.partners(data, enc, ids, offs, [0, 1], "direction")
        for row, (want_dir, step) in enumerate([("down", (0.0, 1.0)), ("left", (-1.0, 0.0))]):
            s, t0 = scenes[ids[row]], data.starts[ids[row]] + offs[row]
            self.assertEqual(caps[row], world.caption(dataclasses.replace(s, direction=want_dir)))
            other = SP.partner_scene(s, "direction", t0)
            self.assertEqual(other.direction, want_dir)
            # the same object position at the window's first frame, then one speed step the other way
            x, y, _ = world.object_state(s, t0)
            xb, yb, _ = world.object_state(other, t0)
            self.assertLess(abs((x - xb + 32) % 64 - 32) + abs((y - yb + 32) % 64 - 32), 1e-6)
            x1, y1, _ = world.object_state(other, t0 + 1)
            xa, ya, _ = world.object_state(s, t0 + 1)
            d = ((x1 - x + 32) % 64 - 32, (y1 - y + 32) % 64 - 32)
            da = ((xa - x + 32) % 64 - 32, (ya - y + 32) % 64 - 32)
            self.assertAlmostEqual(d[0], -da[0], places=6)
            self.assertAlmostEqual(d[1], -da[1], places=6)
            self.assertGreater(abs(d[0] * step[0] + d[1] * step[1]), 0.1)
            frames = [world.render_frame_and_mask(other, t0 + k, 64) for k in range(16)]
            video = torch.from_numpy(np.stack([f for f, _ in frames])).permute(1, 0, 2, 3)[None]
            self.assertTrue(torch.equal(pixels[row], video[0]))
            with torch.no_grad():
                self.assertLess(float((z[row] - enc(video)[0][0]).abs().max()), 1e-5)
        turn = SimpleNamespace(scenes=scenes, starts=[3, 10], pre=scenes)
        with self.assertRaisesRegex(ValueError, "direction pairs need windows of one scene"):
            SP.partners(turn, enc, ids, offs, [0], "direction")

    def test_every_window_gets_a_direction_partner_and_kinds_are_checked(self):
        data = SimpleNamespace(scenes=_scenes(["square", "triangle", "circle"]))
        rng = np.random.default_rng(0)
        self.assertEqual(SP.pick(rng, data, np.array([0, 1, 2, 1]), 1.0, "direction"), [0, 1, 2, 3])
        with self.assertRaisesRegex(ValueError, "direction-pair share must be in"):
            SP.pick(rng, data, np.array([0]), -0.1, "direction")
        with self.assertRaisesRegex(ValueError, "pair kind must be one of"):
            SP.pick(rng, data, np.array([0]), 1.0, "colour")

    def test_only_squares_and_circles_are_paired(self):
        data = SimpleNamespace(scenes=_scenes(["square", "triangle", "circle", "triangle"]))
        ids = np.array([0, 1, 2, 3, 0])
        rng = np.random.default_rng(0)
        self.assertEqual(SP.pick(rng, data, ids, 1.0), [0, 2, 4])
        self.assertEqual(SP.pick(rng, data, ids, 0.0), [])
        with self.assertRaisesRegex(ValueError, "share must be in"):
            SP.pick(rng, data, ids, 1.5)

    def test_captions_without_exactly_one_shape_word_are_refused(self):
        self.assertEqual(SP.swap_shape("a red square moving up on the sand", "square"), "a red circle moving up on the sand")
        with self.assertRaisesRegex(ValueError, "must name 'square' exactly once"):
            SP.swap_shape("a red circle moving up on the sand", "square")


class Options(unittest.TestCase):
    def test_trainer_and_cli_refuse_half_set_or_misplaced_options(self):
        with self.assertRaisesRegex(ValueError, "both set or both 0"):
            S.train_stage1("/nonexistent", more=True, centred=True, pair_p=0.5)
        with self.assertRaisesRegex(ValueError, "are options of stage1_centred"):
            S.train_stage1("/nonexistent", pair_p=0.5, pair_weight=10)
        with self.assertRaisesRegex(ValueError, "both set or both 0"):
            S.train_stage2("/nonexistent", pair_weight=10)
        with self.assertRaisesRegex(ValueError, "dir_pair_p must be in .0, 1. and dir_pair_weight"):
            S.train_stage1("/nonexistent", more=True, centred=True, dir_pair_weight=3)
        with self.assertRaisesRegex(ValueError, "dir_pair_p / dir_pair_weight are options of stage1_centred"):
            S.train_stage1("/nonexistent", more=True, dir_pair_p=0.5, dir_pair_weight=3)
        with self.assertRaisesRegex(ValueError, "dir_pair_t_from must be in"):
            S.train_stage1("/nonexistent", more=True, centred=True, dir_pair_t_from=-1)
        with self.assertRaisesRegex(ValueError, "pair_p and drift_p cannot be combined"):
            S.train_stage2("/nonexistent", pair_p=0.5, pair_weight=10, drift_p=0.5)
        with tempfile.TemporaryDirectory() as out:
            r = subprocess.run([sys.executable, "-m", "models.train.all", "--out", out, "--only", "stage1_centred",
                                "--shape-pair-p", "0.5"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--shape-pair-p must be in [0, 1] and --shape-pair-weight >= 0, both set or both 0", r.stderr)
        for flags, said in ((["--dir-pair-p", "0.5"], "--dir-pair-p must be in [0, 1] and --dir-pair-weight >= 0"),
                            (["--dir-pair-t-from", "1000"], "--dir-pair-t-from must be in [0, 999], not 1000")):
            with tempfile.TemporaryDirectory() as out:
                r = subprocess.run([sys.executable, "-m", "models.train.all", "--out", out, "--only",
                                    "stage1_centred", *flags], cwd=ROOT, capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(said, r.stderr)


if __name__ == "__main__":
    unittest.main()
