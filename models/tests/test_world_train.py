"""The synthetic world (core subset, captions, renders) and the training helpers that shape the shipped model."""
import dataclasses
import math
import unittest

import numpy as np
import torch

from models import manifest as mf
from models import world
from models.train import stages


class CoreWorldTest(unittest.TestCase):
    def test_core_scenes_use_only_core_choices_and_round_trip_through_their_captions(self):
        rng = np.random.default_rng(0)
        for _ in range(200):
            s = world.sample_scene(rng, "core")
            self.assertIn(s.colour, world.CORE["colours"])
            self.assertIn(s.shape, world.CORE["shapes"])
            self.assertEqual(s.motion, "moving")
            self.assertNotEqual(s.colour, s.bg_colour)
            self.assertEqual((s.angle0, s.pan), (0.0, (0.0, 0.0)))
            cap = world.caption(s)
            self.assertTrue(world.in_core(cap), cap)
            a = world.parse_caption(cap)
            self.assertEqual((a["colour"], a["shape"], a["direction"]), (s.colour, s.shape, s.direction))

    def test_in_core_rejects_prompts_outside_the_core_world(self):
        self.assertFalse(world.in_core("a white star spinning up on a purple gradient background"))
        self.assertFalse(world.in_core("a red circle moving to the right on the sea"))
        self.assertTrue(world.in_core("a red circle moving to the right on a plain blue background"))

    def test_centred_plan_starts_every_object_near_the_frame_centre(self):
        from models.train import latents as L
        plain, starts = L._plan(40, 3)
        centred, starts_c = L._plan(40, 3, centred=True)
        self.assertEqual(starts, starts_c)
        for s, c, t0 in zip(plain, centred, starts):
            x, y, _ = world.object_state(c, t0)
            self.assertLessEqual(abs(x - world.UNITS / 2), L.CENTRE_JITTER + 1e-9)
            self.assertLessEqual(abs(y - world.UNITS / 2), L.CENTRE_JITTER + 1e-9)
            # only the position moved: same caption, same motion
            self.assertEqual(world.caption(s), world.caption(c))
            dx = (world.object_state(c, t0 + 5)[0] - x) % world.UNITS
            self.assertAlmostEqual(dx, (world.object_state(s, t0 + 5)[0] - world.object_state(s, t0)[0]) % world.UNITS,
                                   places=9)

    def test_turn_plan_moves_another_way_until_the_turn_then_the_caption_way(self):
        from models.train import latents as L
        scenes, starts = L._plan(60, 4)
        pre = L.turn_pre(scenes, starts, 4)
        seen = set()
        for s, p, t0 in zip(scenes, pre, starts):
            self.assertNotEqual(p.direction, s.direction)
            seen.add(p.direction)
            # everything but the direction and the start position is the caption's scene
            self.assertEqual(dataclasses.replace(p, direction=s.direction, x0=s.x0, y0=s.y0), s)
            pos = [np.array(world.object_state(p if k < L.TURN_AT else s, t0 + k)[:2]) for k in range(16)]
            steps = [(b - a + world.UNITS / 2) % world.UNITS - world.UNITS / 2 for a, b in zip(pos, pos[1:])]
            for k, d in enumerate(steps):         # step k goes from clip frame k to k + 1
                v = np.array(world.DIRECTION_VECTORS[p.direction if k < L.TURN_AT else s.direction])
                self.assertGreater(float(d @ v), 0.0, (k, s.direction, p.direction))   # along that direction
                self.assertAlmostEqual(float(np.abs(d - (d @ v) * v).max()), 0.0, places=9)  # and only along it
        self.assertEqual(seen, set(world.DIRECTIONS))
        # the rendered clip is the pre scene before the turn, the caption's scene from it on
        f, m = L.render_clip(scenes[0], starts[0], 16, pre[0])
        np.testing.assert_array_equal(f[:L.TURN_AT], world.render(pre[0], starts[0], L.TURN_AT, 64))
        np.testing.assert_array_equal(f[L.TURN_AT:], world.render(scenes[0], starts[0] + L.TURN_AT, 16 - L.TURN_AT, 64))
        data = L.LatentSet(torch.zeros(2, 4, 16, 8, 8), torch.ones(2, 1, 16, 8, 8), torch.zeros(2, 3, 64, 64),
                           scenes[:2], starts[:2], pre[:2])
        np.testing.assert_array_equal(data.render(0, 4, 8).permute(1, 0, 2, 3).numpy(), f[4:12])
        with self.assertRaises(ValueError):
            L.load("/nonexistent", centred=True, turn=True)

    def test_vertical_share_draws_that_share_of_up_down_captions(self):
        from models.train import latents as L
        scenes, starts = L._plan(80, 5)
        n = len(scenes)
        # clip i's latents hold the value i, so a window says which clip it came from
        z = torch.arange(n, dtype=torch.float32)[:, None, None, None, None].expand(n, 4, 16, 8, 8).clone()
        data = L.LatentSet(z, torch.ones(n, 1, 16, 8, 8), torch.zeros(n, 3, 64, 64), scenes, starts)
        vert = data.vertical_clips()
        self.assertEqual(vert.tolist(), [s.direction in ("up", "down") for s in scenes])
        self.assertTrue(0 < vert.sum() < n)
        for p in (0.0, 0.75, 1.0):
            zw, _, ids, _ = data.windows(np.random.default_rng(1), 2000, vertical_p=p)
            np.testing.assert_array_equal(zw[:, 0, 0, 0, 0].long().numpy(), ids)
            share = float(vert[ids].mean())
            self.assertAlmostEqual(share, p, delta=0.03)     # binomial sd at 2000 draws <= 0.011
            # within an axis every clip can come up (uniform within the axis)
            if p == 0.75:
                self.assertEqual(set(ids.tolist()), set(range(n)))
        # without the option the draw is the uniform one of earlier runs (same ids for the same seed)
        _, _, ids, _ = data.windows(np.random.default_rng(1), 50)
        np.testing.assert_array_equal(ids, np.random.default_rng(1).integers(0, n, size=50))
        only_h = L.LatentSet(z[~vert], torch.ones(int((~vert).sum()), 1, 16, 8, 8), torch.zeros(1, 3, 64, 64),
                             [s for s, v in zip(scenes, vert) if not v], starts)
        with self.assertRaisesRegex(ValueError, "both axes"):
            only_h.windows(np.random.default_rng(0), 4, vertical_p=0.5)
        with self.assertRaisesRegex(ValueError, "vertical_p must be in \\[0, 1\\]"):
            stages.train_stage2("/nonexistent", vertical_p=1.5)

    def test_boundary_cells_are_the_latent_cells_the_outline_crosses(self):
        from models.train import latents as L
        rng = np.random.default_rng(0)
        base = world.scene_from_caption("a red square moving slowly to the right on a plain blue background", rng,
                                        "core")
        # a square of side 32 (half side 0.82 x size, world._shape_distance) at the frame centre fills latent
        # cells 2-5 of both axes exactly: no outline cell (frame 0 only: it moves on by 0.5 units a frame)
        sq = dataclasses.replace(base, size=16.0 / 0.82, x0=32.0, y0=32.0)
        data = L.LatentSet(torch.zeros(1, 4, 1, 8, 8), torch.ones(1, 1, 1, 8, 8), torch.zeros(1, 3, 64, 64), [sq], [0])
        self.assertEqual(float(L.boundary_cells(data).sum()), 0.0)
        # the circle of radius 16 there: independent count of the cells its outline crosses (some of the cell's
        # pixel centres inside, some outside; the world renders the edge with a one-pixel ramp, hence the margin)
        circ = dataclasses.replace(sq, shape="circle", size=16.0)
        data = dataclasses.replace(data, scenes=[circ])
        got = L.boundary_cells(data)[0, 0, 0].numpy()
        c = np.arange(64) + 0.5
        r = np.hypot(c[None, :] - 32, c[:, None] - 32)
        inside = (r < 16).reshape(8, 8, 8, 8).mean(axis=(1, 3))
        crossed = (inside > 0.1) & (inside < 0.9)
        self.assertTrue(np.all(got[crossed] == 1))
        self.assertEqual(got[3:5, 3:5].sum(), 0)     # the four cells at the centre are fully inside
        self.assertEqual(got[0].sum() + got[7].sum(), 0)
        self.assertGreaterEqual(got.sum(), 12)

    def test_boundary_weight_is_an_option_of_stage1_centred_alone(self):
        with self.assertRaisesRegex(ValueError, "boundary_weight / pair_p / pair_weight / dir_pair_p / dir_pair_weight are options of "
                                                "stage1_centred"):
            stages.train_stage1("/nonexistent", boundary_weight=2.0)

    def test_unknown_world_kind_is_an_error(self):
        with self.assertRaises(ValueError):
            world.sample_scene(np.random.default_rng(0), "mars")

    def test_object_moves_by_its_speed_in_the_caption_direction(self):
        s = world.scene_from_caption("a red square moving quickly to the left on a plain gray background",
                                     np.random.default_rng(1), "core")
        x0, y0, _ = world.object_state(s, 0)
        x1, y1, _ = world.object_state(s, 3)
        self.assertAlmostEqual(((x0 - x1) % world.UNITS), 3 * world.SPEED_VALUES["quickly"], places=9)
        self.assertAlmostEqual(y0, y1, places=9)


class DiffusionLossTest(unittest.TestCase):
    def _by_hand(self, prediction, motion_weight=0.0):
        torch.manual_seed(0)
        ac = torch.linspace(0.99, 0.01, 1000)
        z0 = torch.randn(3, 4, 3, 2, 2)
        w = 1 + torch.rand(3, 1, 3, 2, 2)
        seen = {}

        def predict(zt, t):
            seen["t"] = t.long()
            return zt * 0.5
        torch.manual_seed(1)
        loss = float(stages.diffusion_loss(predict, z0, w, ac, prediction, motion_weight=motion_weight))
        torch.manual_seed(1)
        t = torch.randint(0, 1000, (3,))
        eps = torch.randn_like(z0)
        self.assertTrue(torch.equal(t, seen["t"]))
        expected = 0.0
        for i in range(3):
            a = float(ac[t[i]])
            al, sg, snr = math.sqrt(a), math.sqrt(1 - a), a / (1 - a)
            zt = al * z0[i] + sg * eps[i]
            pred = zt * 0.5
            # x0 estimate from the prediction, then the x0 error weighted by min(SNR, 5) + 1
            x0 = (al * zt - sg * pred) if prediction == "v_prediction" else (zt - sg * pred) / al
            err = float(((x0 - z0[i]) ** 2 * w[i]).sum() / w[i].sum())
            # frame-difference term: frames f and f+1, cell weight = the larger of the two frames' weights
            num = den = 0.0
            for f in range(z0.shape[2] - 1):
                wf = torch.maximum(w[i][:, f], w[i][:, f + 1])
                d = (x0[:, f + 1] - x0[:, f]) - (z0[i][:, f + 1] - z0[i][:, f])
                num, den = num + float((d ** 2 * wf).sum()), den + float(wf.sum())
            expected += (err + motion_weight * num / den) * (min(snr, 5.0) + 1) / 3
        return loss, expected

    def test_v_prediction_loss_is_the_weighted_x0_error(self):
        loss, expected = self._by_hand("v_prediction")
        self.assertTrue(math.isclose(loss, expected, rel_tol=1e-4), (loss, expected))

    def test_motion_term_adds_the_weighted_error_of_the_frame_differences(self):
        loss, expected = self._by_hand("v_prediction", motion_weight=0.7)
        plain, _ = self._by_hand("v_prediction")
        self.assertTrue(math.isclose(loss, expected, rel_tol=1e-4), (loss, expected))
        self.assertGreater(loss, plain * 1.05)

    def test_motion_term_is_zero_for_a_perfect_prediction_and_needs_v_prediction(self):
        ac = torch.linspace(0.99, 0.01, 1000)
        z0, w = torch.randn(2, 4, 5, 2, 2), torch.ones(2, 1, 5, 2, 2)
        # a predictor that knows z0 returns the true v = (alpha z_t - z0) / sigma, i.e. x0 = alpha z_t - sigma v = z0
        def exact(zt, t):
            a = ac[t.long()].view(-1, 1, 1, 1, 1)
            return (a.sqrt() * zt - z0) / (1 - a).sqrt()
        self.assertLess(float(stages.diffusion_loss(exact, z0, w, ac, motion_weight=2.0)), 1e-8)
        with self.assertRaises(ValueError):
            stages.diffusion_loss(exact, z0, w, ac, "epsilon", motion_weight=1.0)

    def test_terminal_samples_are_pure_noise_at_the_last_timestep(self):
        # terminal_p = 1: every sample at t = 999 with z_t = eps (no alpha z0 term), the sampler's first step; the
        # loss is still the weighted x0 error of x0 = alpha z_t - sigma v (the sampler's estimate)
        torch.manual_seed(0)
        ac = torch.linspace(0.99, 0.01, 1000)
        z0, w = torch.randn(3, 4, 3, 2, 2), 1 + torch.rand(3, 1, 3, 2, 2)
        seen = {}

        def predict(zt, t):
            seen["t"], seen["zt"] = t.long(), zt.clone()
            return zt * 0.5
        torch.manual_seed(1)
        loss = float(stages.diffusion_loss(predict, z0, w, ac, terminal_p=1.0))
        torch.manual_seed(1)
        torch.randint(0, 1000, (3,))
        eps = torch.randn_like(z0)
        self.assertEqual(seen["t"].tolist(), [999, 999, 999])
        self.assertTrue(torch.equal(seen["zt"], eps))
        a = float(ac[999])
        al, sg, snr = math.sqrt(a), math.sqrt(1 - a), a / (1 - a)
        expected = 0.0
        for i in range(3):
            x0 = al * eps[i] - sg * eps[i] * 0.5
            expected += float(((x0 - z0[i]) ** 2 * w[i]).sum() / w[i].sum()) * (min(snr, 5.0) + 1) / 3
        self.assertTrue(math.isclose(loss, expected, rel_tol=1e-4), (loss, expected))
        # terminal_p = 0 draws nothing more: the same loss as before the option existed
        torch.manual_seed(1)
        plain = float(stages.diffusion_loss(predict, z0, w, ac))
        torch.manual_seed(1)
        self.assertEqual(plain, float(stages.diffusion_loss(predict, z0, w, ac, terminal_p=0.0)))

    def test_epsilon_loss_is_the_weighted_x0_error(self):
        loss, expected = self._by_hand("epsilon")
        self.assertTrue(math.isclose(loss, expected, rel_tol=1e-4), (loss, expected))


class EnhancerScheduleTest(unittest.TestCase):
    def test_training_table_is_the_official_logsnr_cosine_interp_one(self):
        # the same table as lib/schedulers/logsnr-cosine.ts (sigma_599 = 0.972363, sigma_0 = 0.001106 there):
        # index 0 clean, 999 pure noise; a reversed table trains the enhancer on the wrong noise levels
        from models.train import common
        alphas, sigmas = common.logsnr_cosine_interp()
        self.assertAlmostEqual(float(sigmas[599]), 0.972363, places=5)
        self.assertAlmostEqual(float(sigmas[0]), 0.001106, places=5)
        self.assertEqual(float(sigmas[999]), 1.0)
        self.assertTrue(bool((sigmas[1:] >= sigmas[:-1]).all()))
        self.assertTrue(torch.allclose(alphas ** 2 + sigmas ** 2, torch.ones(1000), atol=1e-6))


class MergeDefaultsTest(unittest.TestCase):
    def test_overrides_are_deep_merged_and_unknown_keys_rejected(self):
        base = mf.defaults("tiny", 64, 128, [128, 128])
        merged = mf.merge_defaults(base, {"stage2": {"num_inference_steps": 20, "guidance_scale": 4.0}})
        self.assertEqual(merged["stage2"]["num_inference_steps"], 20)
        self.assertEqual(merged["stage2"]["window_frames"], 16)
        self.assertEqual(base["stage2"]["num_inference_steps"], 50)
        with self.assertRaisesRegex(ValueError, "num_steps"):
            mf.merge_defaults(base, {"stage2": {"num_steps": 20}})



class CamInitTest(unittest.TestCase):
    """Why run 2's CAM stayed unused, and the run-3 initialisation that opens the path (stages.init_frame_encoder)."""

    @classmethod
    def setUpClass(cls):
        from models.configs_unet import get_config
        from models.train import common as C
        from models.train import latents as L
        torch.manual_seed(0)
        scenes, starts = L._plan(12, 5)
        n = len(scenes)
        cls.data = L.LatentSet(torch.zeros(n, 4, 16, 8, 8), torch.ones(n, 1, 16, 8, 8), torch.zeros(n, 3, 64, 64),
                               scenes, starts)
        cls.net = get_config(C.NET_CONFIG)
        cls.frames = torch.stack([cls.data.render(i, 0, 1)[:, 0] for i in range(n)])   # [12, 3, 64, 64]

    def _stage2(self):
        from models.stage2 import Stage2UNet
        return Stage2UNet(self.net).eval()

    def _dependence(self, enc):
        with torch.no_grad():
            return float((enc(self.frames[:6]) - enc(self.frames[6:])).abs().mean())

    def test_default_initialised_frame_encoder_hardly_sees_its_input(self):
        enc = self._stage2().cam.controlnet_cond_embedding
        enc.conv_out.reset_parameters()  # even with a non-zero conv_out (upstream: zero)
        self.assertLess(self._dependence(enc), 1e-3)  # measured ~5e-5

    def test_data_dependent_init_gives_an_input_dependent_output_of_the_target_scale(self):
        enc = self._stage2().cam.controlnet_cond_embedding
        dep = stages.init_frame_encoder(enc, self.data, np.random.default_rng(0), target_std=0.5, n=6)
        self.assertGreater(dep, 0.1)  # measured 0.67 on the training set
        self.assertGreater(self._dependence(enc), 0.1)

    def test_cam_gain_is_zero_while_the_mergers_are_zero_and_not_after(self):
        from models.train import common as C
        model = self._stage2()
        stages.init_frame_encoder(model.cam.controlnet_cond_embedding, self.data, np.random.default_rng(0), n=6)
        z0 = torch.randn(4, 4, 16, 8, 8)
        w = torch.ones(4, 1, 16, 8, 8)
        ctx = torch.randn(4, 93, self.net.unet.cross_attention_dim)
        cond = torch.stack([self.data.render(i, 0, 8) for i in range(4)])
        ac = C.ddpm_alphas_cumprod()
        self.assertEqual(stages.cam_gain(model, z0, w, ctx, cond, ac), 0.0)
        for name, p in model.named_parameters():
            if "merger" in name and "proj_out.weight" in name:
                torch.nn.init.normal_(p, std=0.05)
        self.assertNotEqual(stages.cam_gain(model, z0, w, ctx, cond, ac), 0.0)
        self.assertFalse(model.training)  # cam_gain restores the mode it found

    def test_caption_direction_gain_is_the_relative_first_step_x0_error_on_the_new_frames(self):
        from models.train import common as C
        model = self._stage2()
        torch.manual_seed(1)
        z0 = torch.randn(3, 4, 16, 8, 8)
        w = 1.0 + 3.0 * (torch.rand(3, 1, 16, 8, 8) > 0.7).float()
        own, other = torch.randn(2, 3, 93, self.net.unet.cross_attention_dim)
        cond = torch.stack([self.data.render(i, 0, 8) for i in range(3)])
        ac = C.ddpm_alphas_cumprod()
        model.train()
        self.assertEqual(stages.caption_direction_gain(model, z0, w, own, own, cond, ac), 0.0)
        g = stages.caption_direction_gain(model, z0, w, own, other, cond, ac)
        self.assertTrue(model.training)      # restored
        # by hand: z_t = pure noise (seeded by t = 999), x0 = alpha z_t - sigma v, error on frames 8-15 only
        model.eval()
        with torch.no_grad():
            zt = torch.randn(z0.shape, generator=torch.Generator().manual_seed(999))
            al, sg = float(ac[999].sqrt()), float((1 - ac[999]).sqrt())
            tt = torch.full((3,), 999.0)
            e = [float((((al * zt - sg * model(zt, tt, c, cond)) - z0)[:, :, 8:] ** 2 * w[:, :, 8:]).sum()
                       / w[:, :, 8:].sum()) for c in (own, other)]
        self.assertNotEqual(g, 0.0)
        self.assertAlmostEqual(g, (e[1] - e[0]) / e[0], places=6)


class DdimReplacementTest(unittest.TestCase):
    """``stages.ddim_sample(known=, replace_steps=)``: the probe's copy of the pipeline's overlap replacement."""

    def test_the_first_k_inputs_have_the_noised_known_frames_and_the_free_steps_see_the_own_state(self):
        known = torch.randn(1, 4, 2, 3, 3, generator=torch.Generator().manual_seed(1))
        z0 = torch.randn(1, 4, 5, 3, 3, generator=torch.Generator().manual_seed(2))
        inputs = []

        def call(z2, t2):           # records the network input; predicts v = 0, so every DDIM step scales z
            inputs.append(z2[:1].clone())
            return torch.zeros_like(z2)

        steps, k = 5, 3
        stages.ddim_sample(call, z0.clone(), steps, 2.0, known=known, replace_steps=k)
        self.assertEqual(len(inputs), steps)
        ac = stages.C.ddpm_alphas_cumprod()
        ts = list(range(999, -1, -1000 // steps))
        for i, t in enumerate(ts[:k]):     # input frames 0-1: sqrt(abar_t) known + sqrt(1 - abar_t) eps_i
            eps = torch.randn(known.shape, generator=torch.Generator().manual_seed(100 + i))
            want = ac[t].sqrt() * known + (1 - ac[t]).sqrt() * eps
            self.assertTrue(torch.allclose(inputs[i][:, :, :2], want, atol=1e-6), i)
        # only the input is replaced: with v = 0 each step scales the sampler's state by one factor, so it stays a
        # multiple of z0 in every position, frames 0-1 included, and that state is the input of the free steps
        for i in range(steps):
            scale = float((inputs[i][:, :, 2:] / z0[:, :, 2:]).mean())
            self.assertTrue(torch.allclose(inputs[i][:, :, 2:], scale * z0[:, :, 2:], atol=1e-6), i)
            if i >= k:
                self.assertTrue(torch.allclose(inputs[i][:, :, :2], scale * z0[:, :, :2], atol=1e-6), i)
        # replace_steps = 0 is the plain sampler, bit for bit
        plain = stages.ddim_sample(call, z0.clone(), steps, 2.0)
        self.assertTrue(torch.equal(stages.ddim_sample(call, z0.clone(), steps, 2.0, known=known, replace_steps=0),
                                    plain))

    def test_guidance_from_k_leaves_the_first_k_steps_unguided(self):
        z0 = torch.randn(1, 4, 3, 3, 3, generator=torch.Generator().manual_seed(3))

        def call(z2, t2):           # u = 0.1 z, c = 0.3 z: guided v = (0.1 + 0.2 g) z, so g changes every step
            return torch.cat([0.1 * z2[:1], 0.3 * z2[1:]])

        steps, g = 4, 3.0
        sample = lambda **kw: stages.ddim_sample(call, z0.clone(), steps, g, **kw)   # noqa: E731
        self.assertTrue(torch.equal(sample(guidance_from=0), sample()))
        unguided = stages.ddim_sample(call, z0.clone(), steps, 1.0)
        self.assertTrue(torch.equal(sample(guidance_from=steps), unguided))
        # k = 2 by hand: two steps at g = 1, two at g = 3, with the DDIM update written out (v-prediction)
        ac = stages.C.ddpm_alphas_cumprod()
        ts = list(range(999, -1, -1000 // steps))
        z = z0.clone()
        for i, t in enumerate(ts):
            v = (0.1 + 0.2 * (1.0 if i < 2 else g)) * z
            a, a_prev = ac[t], (ac[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0))
            x0, eps = a.sqrt() * z - (1 - a).sqrt() * v, (1 - a).sqrt() * z + a.sqrt() * v
            z = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        self.assertTrue(torch.allclose(sample(guidance_from=2), z, atol=1e-6))
        self.assertFalse(torch.allclose(sample(guidance_from=2), sample(), atol=1e-3))

    def test_start_k_begins_at_the_kth_timestep_from_the_noised_init(self):
        z0 = torch.randn(1, 4, 3, 3, 3, generator=torch.Generator().manual_seed(4))
        init = torch.randn(1, 4, 3, 3, 3, generator=torch.Generator().manual_seed(5))
        seen = []

        def call(z2, t2):           # records (t, input); v = 0.2 z
            seen.append((float(t2[0]), z2[:1].clone()))
            return 0.2 * z2

        steps, k = 5, 2
        got = stages.ddim_sample(call, z0.clone(), steps, 3.0, init=init, start=k)
        ac = stages.C.ddpm_alphas_cumprod()
        ts = list(range(999, -1, -1000 // steps))
        self.assertEqual([t for t, _ in seen], [float(t) for t in ts[k:]])
        z = ac[ts[k]].sqrt() * init + (1 - ac[ts[k]]).sqrt() * z0          # SDEdit: init noised to the k-th step
        self.assertTrue(torch.allclose(seen[0][1], z, atol=1e-6))
        for i, t in enumerate(ts[k:], k):
            a, a_prev = ac[t], (ac[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0))
            x0, eps = a.sqrt() * z - (1 - a).sqrt() * 0.2 * z, (1 - a).sqrt() * z + a.sqrt() * 0.2 * z
            z = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        self.assertTrue(torch.allclose(got, z, atol=1e-6))
        for bad in ({"start": 2}, {"start": steps, "init": init}):
            with self.assertRaisesRegex(ValueError, "start must be in"):
                stages.ddim_sample(call, z0.clone(), steps, 3.0, **bad)


if __name__ == "__main__":
    unittest.main()
