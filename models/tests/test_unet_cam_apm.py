"""Tests of the stage-1/stage-2 networks (UNet3D, CAM, APM, Stage2UNet) and their checkpoint key mapping.

Run: ``cd /work/main && /usr/bin/python3 -m unittest discover -s models/tests -t . -v``

Full-size models are built on the ``meta`` device (no weight memory): parameter counts and official key
names/shapes are checked against spec §5. Numerical tests use the ``tiny`` configuration.
"""
import io
import os
import time
import unittest
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

from models.apm import APMImageEncoder, clip_preprocess
from models.configs_unet import FULL, TINY
from models.stage2 import Stage2UNet
from models.state_dict_keys_unet import (apm_from_checkpoint, dropped_checkpoint_keys, stage1_from_diffusers,
                                         stage2_from_checkpoint)
from models.unet3d import UNet3DConditionModel
from models.unet3d_attention import Attention

TOL = 1e-5  # TorchScript vs eager, and equivalence checks (float32)


class _MetaFactories(TorchFunctionMode):
    """Sends tensor factories to the meta device (torch 1.13 has no ``with torch.device('meta')``)."""

    FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.tensor, torch.randn, torch.rand, torch.full,
                 torch.arange}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self.FACTORIES:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


@contextmanager
def meta_construction():
    """Build modules without allocating weights: ``torch.device('meta')`` on torch >= 2, factory mode on 1.13."""
    if hasattr(torch.device("meta"), "__enter__"):
        with torch.device("meta"):
            yield
    else:
        with _MetaFactories():
            yield


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny_inputs(batch: int = 2, frames: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    d = TINY.unet.cross_attention_dim
    sample = torch.randn(batch, 4, frames, 8, 8, generator=g)
    timestep = torch.tensor([981.0, 501.0][:batch])
    ctx = torch.randn(batch, 93, d, generator=g)
    cond = torch.rand(batch, 3, 8, 64, 64, generator=g) * 2 - 1
    return sample, timestep, ctx, cond


def perturb_(module: torch.nn.Module, names, seed: int = 1, scale: float = 0.05, gain: float = 0.0) -> None:
    """Fill the parameters whose name contains one of ``names`` with random values.

    Vectors/scalars get N(0, scale²); matrices/kernels get N(0, scale²), or N(0, gain²/fan_in) when ``gain`` > 0.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if any(s in name for s in names):
                std = scale
                if gain > 0 and p.dim() >= 2:
                    std = gain / (p[0].numel() ** 0.5)
                p.copy_(torch.randn(p.shape, generator=g) * std)


def script_roundtrip(module: torch.nn.Module) -> torch.jit.ScriptModule:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buf)
    buf.seek(0)
    return torch.jit.load(buf)


class FullSizeTest(unittest.TestCase):
    """Spec §5 parameter counts and official key names, without allocating weights."""

    @classmethod
    def setUpClass(cls):
        with meta_construction():
            cls.stage2 = Stage2UNet(FULL, cam_from_base=False)
            cls.stage1 = UNet3DConditionModel(FULL.unet)
            cls.apm = APMImageEncoder(FULL.clip, FULL.resampler)

    def test_built_on_meta(self):
        self.assertTrue(all(p.is_meta for p in self.stage2.parameters()))
        self.assertTrue(all(p.is_meta for p in self.apm.parameters()))

    def test_param_counts(self):
        base = self.stage2.base_model
        mergers = n_params(base.cross_attention_merger_down_blocks) + n_params(base.cross_attention_merger_mid_block)
        mixers = sum(p.numel() for n, p in base.named_parameters()
                     if ".attn2.conv." in n or ".attn2.conv_ln." in n or n.endswith(".attn2.alpha"))
        self.assertEqual(n_params(self.stage1), 1_411_233_860)
        self.assertEqual(n_params(base) - mergers - mixers, 1_411_233_860)
        self.assertEqual(mergers, 68_867_200)
        self.assertEqual(mixers, 377_744)
        self.assertEqual(n_params(base), 1_480_478_804)        # base_model.* of the checkpoint
        self.assertEqual(n_params(self.stage2.cam), 621_981_664)
        self.assertEqual(n_params(self.stage2.cam.controlnet_cond_embedding), 3_587_488)
        self.assertEqual(n_params(self.apm.resampler), 22_299_904)
        # OpenCLIP ViT-H/14 visual tower only; the checkpoint's image_encoder.model.* also holds 51,723,265 text
        # leftovers (token_embedding, positional_embedding, ln_final, text_projection, logit_scale), not counted.
        self.assertEqual(n_params(self.apm.visual), 632_076_800)

    def test_structure_counts(self):
        base = self.stage2.base_model
        self.assertEqual(len(base.cross_attention_merger_down_blocks), 12)
        self.assertEqual(FULL.unet.skip_channels, (320, 320, 320, 320, 640, 640, 640, 1280, 1280, 1280, 1280, 1280))
        mixers = [n for n, _ in base.named_modules() if n.endswith("attn2.conv")]
        self.assertEqual(len(mixers), 16)
        self.assertFalse(any(".conv_ln" in n for n, _ in self.stage2.cam.named_parameters()))
        self.assertFalse(any("up_blocks" in n for n, _ in self.stage2.cam.named_parameters()))

    def test_official_key_shapes(self):
        sd = {k: tuple(v.shape) for k, v in self.stage1.state_dict().items()}
        expect = {
            "conv_in.weight": (320, 4, 3, 3),
            "time_embedding.linear_1.weight": (1280, 320),
            "transformer_in.proj_in.weight": (512, 320),
            "transformer_in.transformer_blocks.0.attn2.to_k.weight": (512, 512),
            "down_blocks.0.resnets.0.time_emb_proj.weight": (320, 1280),
            "down_blocks.0.temp_convs.0.conv1.2.weight": (320, 320, 3, 1, 1),
            "down_blocks.0.temp_convs.0.conv4.3.bias": (320,),
            "down_blocks.0.attentions.0.proj_in.weight": (320, 320),
            "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
            "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight": (2560, 320),
            "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight": (320, 1280),
            "down_blocks.1.resnets.0.conv_shortcut.weight": (640, 320, 1, 1),
            "down_blocks.2.downsamplers.0.conv.weight": (1280, 1280, 3, 3),
            "down_blocks.3.resnets.1.conv2.weight": (1280, 1280, 3, 3),
            "mid_block.temp_attentions.0.transformer_blocks.0.attn1.to_out.0.bias": (1280,),
            "up_blocks.0.resnets.0.conv1.weight": (1280, 2560, 3, 3),
            "up_blocks.0.upsamplers.0.conv.weight": (1280, 1280, 3, 3),
            "up_blocks.3.resnets.0.conv1.weight": (320, 960, 3, 3),
            "up_blocks.3.temp_attentions.2.proj_out.weight": (320, 320),
            "conv_norm_out.weight": (320,),
            "conv_out.weight": (4, 320, 3, 3),
        }
        for k, shape in expect.items():
            self.assertEqual(sd.get(k), shape, k)
        self.assertNotIn("down_blocks.3.downsamplers.0.conv.weight", sd)
        self.assertNotIn("up_blocks.3.upsamplers.0.conv.weight", sd)

        s2 = {k: tuple(v.shape) for k, v in self.stage2.state_dict().items()}
        m = "base_model.cross_attention_merger_down_blocks.4.temporal_transformer."
        a2 = "base_model.up_blocks.1.attentions.2.transformer_blocks.0.attn2."
        expect2 = {
            m + "norm.weight": (640,), m + "proj_in.weight": (640, 640), m + "proj_out.bias": (640,),
            m + "attention.to_q.weight": (640, 640), m + "attention.to_out.0.bias": (640,),
            "base_model.cross_attention_merger_mid_block.temporal_transformer.attention.to_v.weight": (1280, 1280),
            a2 + "conv.weight": (77, 93, 3), a2 + "conv.bias": (77,), a2 + "conv_ln.weight": (1024,),
            a2 + "alpha": (),
            "cam.controlnet_cond_embedding.conv_in.weight": (32, 3, 3, 3),
            "cam.controlnet_cond_embedding.blocks.5.weight": (512, 256, 3, 3),
            "cam.controlnet_cond_embedding.conv_out.weight": (320, 512, 3, 3),
            "cam.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight": (1280, 1024),
        }
        for k, shape in expect2.items():
            self.assertEqual(s2.get(k), shape, k)
        self.assertNotIn(m + "attention.to_q.bias", s2)

        va = {k: tuple(v.shape) for k, v in self.apm.state_dict().items()}
        expect3 = {
            "visual.conv1.weight": (1280, 3, 14, 14), "visual.class_embedding": (1280,),
            "visual.positional_embedding": (257, 1280), "visual.ln_pre.weight": (1280,),
            "visual.transformer.resblocks.31.attn.in_proj_weight": (3840, 1280),
            "visual.transformer.resblocks.31.attn.in_proj_bias": (3840,),
            "visual.transformer.resblocks.0.attn.out_proj.weight": (1280, 1280),
            "visual.transformer.resblocks.0.mlp.c_fc.weight": (5120, 1280),
            "visual.transformer.resblocks.0.mlp.c_proj.weight": (1280, 5120),
            "visual.ln_post.bias": (1280,), "visual.proj": (1280, 1024),
            "resampler.context_embedding.0.weight": (1280, 1024),
            "resampler.context_embedding.2.weight": (16384, 1280),
        }
        for k, shape in expect3.items():
            self.assertEqual(va.get(k), shape, k)
        self.assertNotIn("mean", va)  # non-persistent buffers, as in FrozenOpenCLIPImageEmbedder


class TinyNumericsTest(unittest.TestCase):
    """TorchScript parity, zero-init behaviour, CAM/APM reachability and key mapping on the tiny config."""

    def setUp(self):
        torch.manual_seed(0)

    def test_tiny_sizes(self):
        s2 = Stage2UNet(TINY)
        apm = APMImageEncoder(TINY.clip, TINY.resampler)
        self.assertLess(n_params(s2), 2_500_000)
        self.assertLess(n_params(apm), 2_500_000)
        self.assertEqual(len(s2.base_model.cross_attention_merger_down_blocks), 12)
        self.assertEqual(len([n for n, _ in s2.base_model.named_modules() if n.endswith("attn2.conv")]), 16)

    def test_stage1_script_matches_eager_any_frames(self):
        unet = UNet3DConditionModel(TINY.unet).eval()
        perturb_(unet, ["conv4.3"], seed=3)  # temporal convs non-trivial
        scripted = script_roundtrip(unet)
        for frames in (16, 5, 1):
            sample, t, ctx, _ = tiny_inputs(frames=frames)
            with torch.no_grad():
                eager = unet(sample, t, ctx[:, :77])
                ts = scripted(sample, t, ctx[:, :77])
            self.assertEqual(tuple(eager.shape), (2, 4, frames, 8, 8))
            self.assertLess((eager - ts).abs().max().item(), TOL)

    def test_stage2_script_matches_eager(self):
        s2 = Stage2UNet(TINY).eval()
        perturb_(s2, ["proj_out", "alpha", "controlnet_cond_embedding.conv_out"], seed=4)
        scripted = script_roundtrip(s2)
        sample, t, ctx, cond = tiny_inputs()
        with torch.no_grad():
            eager = s2(sample, t, ctx, cond)
            ts = scripted(sample, t, ctx, cond)
        self.assertEqual(tuple(eager.shape), (2, 4, 16, 8, 8))
        self.assertLess((eager - ts).abs().max().item(), TOL)

    def test_apm_encoder_script_matches_eager(self):
        apm = APMImageEncoder(TINY.clip, TINY.resampler).eval()
        scripted = script_roundtrip(apm)
        for size in (64, 32, 20):  # downscale (antialias blur), identity size, upscale
            img = torch.rand(2, 3, size, size) * 2 - 1
            with torch.no_grad():
                eager = apm(img)
                ts = scripted(img)
            self.assertEqual(tuple(eager.shape), (2, 16, TINY.unet.cross_attention_dim))
            self.assertLess((eager - ts).abs().max().item(), TOL)

    def test_clip_preprocess(self):
        mean = torch.tensor(TINY.clip.mean)
        std = torch.tensor(TINY.clip.std)
        x = torch.rand(1, 3, 32, 32) * 2 - 1
        ref = ((x + 1) / 2 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
        self.assertLess((clip_preprocess(x, 32, mean, std) - ref).abs().max().item(), 1e-5)
        grey = torch.zeros(1, 3, 100, 100)  # the unconditional APM input: mid-grey in [-1,1] (pitfall G5)
        out = clip_preprocess(grey, 32, mean, std)
        self.assertLess((out - ((0.5 - mean) / std).view(1, 3, 1, 1)).abs().max().item(), 1e-5)

    def test_context_sharing_equals_repeat(self):
        attn = Attention(16, 2, 8, 64)
        x = torch.randn(2 * 5, 12, 16)
        ctx = torch.randn(2, 77, 64)
        shared = attn(x, ctx)
        repeated = attn(x, ctx.repeat_interleave(5, dim=0))
        self.assertLess((shared - repeated).abs().max().item(), 1e-6)

    def test_fresh_stage2_equals_plain_base_unet(self):
        s2 = Stage2UNet(TINY).eval()
        plain = UNet3DConditionModel(TINY.unet).eval()
        result = plain.load_state_dict(s2.base_model.state_dict(), strict=False)
        self.assertEqual(result.missing_keys, [])
        self.assertTrue(all("cross_attention_merger" in k or ".attn2.conv" in k or k.endswith("attn2.alpha")
                            for k in result.unexpected_keys))
        self.assertEqual(len(result.unexpected_keys), 13 * 11 + 16 * 5)  # 11 tensors/merger, 5/mixer
        sample, t, ctx, cond = tiny_inputs()
        with torch.no_grad():
            a = s2(sample, t, ctx, cond)
            b = plain(sample, t, ctx[:, :77])
        self.assertLess((a - b).abs().max().item(), 1e-6)

    def test_cam_reaches_output(self):
        s2 = Stage2UNet(TINY).eval()
        sample, t, ctx, cond = tiny_inputs()
        cond2 = torch.rand_like(cond) * 2 - 1
        with torch.no_grad():
            self.assertEqual((s2(sample, t, ctx, cond) - s2(sample, t, ctx, cond2)).abs().max().item(), 0.0)
            perturb_(s2, ["cross_attention_merger", "controlnet_cond_embedding"], seed=5, gain=1.5)
            diff = (s2(sample, t, ctx, cond) - s2(sample, t, ctx, cond2)).abs().max().item()
        self.assertGreater(diff, 1e-4)

    def test_cam_uses_first_8_latent_frames_and_text_only(self):
        s2 = Stage2UNet(TINY).eval()
        perturb_(s2, ["controlnet_cond_embedding.conv_out"], seed=6)
        sample, t, ctx, cond = tiny_inputs()
        sample2 = sample.clone()
        sample2[:, :, 8:] += 1.0
        ctx2 = ctx.clone()
        ctx2[:, 77:] += 1.0
        with torch.no_grad():
            skips, mid = s2.cam(sample, t, ctx, cond)
            skips2, mid2 = s2.cam(sample2, t, ctx2, cond)
        self.assertEqual(len(skips), 12)
        self.assertEqual(tuple(skips[0].shape), (16, 16, 8, 8))
        self.assertEqual(tuple(mid.shape), (16, 32, 1, 1))
        self.assertEqual(max((a - b).abs().max().item() for a, b in zip(skips, skips2)), 0.0)
        self.assertEqual((mid - mid2).abs().max().item(), 0.0)

    def test_apm_tokens_reach_output_only_when_alpha_nonzero(self):
        s2 = Stage2UNet(TINY).eval()
        sample, t, ctx, cond = tiny_inputs()
        ctx2 = ctx.clone()
        ctx2[:, 77:] = torch.randn(2, 16, ctx.shape[-1])
        with torch.no_grad():
            self.assertEqual((s2(sample, t, ctx, cond) - s2(sample, t, ctx2, cond)).abs().max().item(), 0.0)
            perturb_(s2, ["attn2.alpha"], seed=7, scale=1.0)
            diff = (s2(sample, t, ctx, cond) - s2(sample, t, ctx2, cond)).abs().max().item()
        self.assertGreater(diff, 1e-4)

    def test_checkpoint_key_mapping_strict(self):
        src_s2 = Stage2UNet(TINY).eval()
        perturb_(src_s2, ["proj_out", "alpha", "conv_out"], seed=8)
        src_apm = APMImageEncoder(TINY.clip, TINY.resampler).eval()
        # Synthetic streaming_t2v.ckpt["state_dict"] in the official layout.
        ckpt = {}
        for k, v in src_s2.state_dict().items():
            ckpt[("unet." + k[len("cam."):]) if k.startswith("cam.") else k] = v
        for k, v in src_apm.visual.state_dict().items():
            ckpt["image_encoder.model.visual." + k] = v
        for k, v in src_apm.resampler.state_dict().items():
            ckpt["resampler." + k] = v
        d = TINY.unet.cross_attention_dim
        ckpt.update({"image_encoder.model.token_embedding.weight": torch.zeros(10, d),
                     "image_encoder.model.positional_embedding": torch.zeros(77, d),
                     "image_encoder.model.ln_final.weight": torch.ones(d),
                     "image_encoder.model.text_projection": torch.zeros(d, d),
                     "image_encoder.model.logit_scale": torch.tensor(1.0),
                     "vae.decoder.conv_out.weight": torch.zeros(3, 4, 3, 3),
                     "text_encoder.text_model.final_layer_norm.weight": torch.ones(d)})

        dst_s2 = Stage2UNet(TINY).eval()
        dst_s2.load_streaming_t2v_state_dict(ckpt)      # strict
        dst_apm = APMImageEncoder(TINY.clip, TINY.resampler).eval()
        dst_apm.load_streaming_t2v_state_dict(ckpt)     # strict
        self.assertEqual(set(apm_from_checkpoint(ckpt)), set(dst_apm.state_dict()))
        self.assertEqual(len(stage2_from_checkpoint(ckpt)), len(src_s2.state_dict()))
        self.assertEqual(len(dropped_checkpoint_keys(ckpt)), 7)

        sample, t, ctx, cond = tiny_inputs()
        img = torch.rand(2, 3, 64, 64) * 2 - 1
        with torch.no_grad():
            self.assertEqual((src_s2(sample, t, ctx, cond) - dst_s2(sample, t, ctx, cond)).abs().max().item(), 0.0)
            self.assertEqual((src_apm(img) - dst_apm(img)).abs().max().item(), 0.0)

        # ModelScope diffusers unet/ state dict -> stage-1 UNet, same names.
        stage1_src = UNet3DConditionModel(TINY.unet)
        stage1_dst = UNet3DConditionModel(TINY.unet)
        stage1_dst.load_diffusers_state_dict(stage1_src.state_dict())   # strict
        self.assertEqual(set(stage1_from_diffusers(stage1_src.state_dict())), set(stage1_dst.state_dict()))

    @unittest.skipUnless(hasattr(torch.nn.functional, "scaled_dot_product_attention"), "needs torch >= 2.0")
    def test_sdpa_matches_math_attention(self):
        math_model = Stage2UNet(TINY).eval()
        perturb_(math_model, ["proj_out", "alpha", "controlnet_cond_embedding.conv_out"], seed=9)
        sdpa_model = Stage2UNet(TINY, use_sdpa=True).eval()
        sdpa_model.load_state_dict(math_model.state_dict(), strict=True)
        sample, t, ctx, cond = tiny_inputs()
        with torch.no_grad():
            a = math_model(sample, t, ctx, cond)
            b = script_roundtrip(sdpa_model)(sample, t, ctx, cond)
        self.assertLess((a - b).abs().max().item(), TOL)

    def test_tiny_stage2_speed(self):
        """Tiny stage-2 forward (B=2, 16 frames, 8x8 latents, 64x64 cond pixels) well under 1 s on 2 cores."""
        s2 = Stage2UNet(TINY).eval()
        sample, t, ctx, cond = tiny_inputs()
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            with torch.no_grad():
                s2(sample, t, ctx, cond)
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    s2(sample, t, ctx, cond)
                    times.append(time.perf_counter() - t0)
                    if times[-1] < 0.5:  # clearly fast enough; stop early
                        break
        finally:
            torch.set_num_threads(threads)
        best = min(times)
        if best >= 1.0 and os.getloadavg()[0] > (os.cpu_count() or 1):
            self.skipTest(f"machine busy (load {os.getloadavg()[0]:.1f}); best forward {best:.2f} s")
        self.assertLess(best, 1.0)


if __name__ == "__main__":
    unittest.main()
