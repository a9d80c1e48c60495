"""Tests of the export CLI and the committed models/tiny directory (models/export*.py, models/manifest.py).

* every committed tiny component (TorchScript) equals the eager module rebuilt from the same seed;
* the committed directory is exactly what ``python3 -m models.export --config tiny`` writes today (byte-identical);
* manifest: roles, shapes (symbolic dims evaluated at example_dims), sha256, libtorch 1.13 operator set;
* the official-weights path on synthetic tiny checkpoints in the official key layouts (strict loads).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import torch

from models import manifest as mf
from models import tokenizer as tk
from models.apm import APMImageEncoder
from models.configs_aux import build_aux_model, get_config as aux_config
from models.configs_unet import TINY
from models.export import ExportError, export_directory, main
from models.export_components import (as_tuple, build_random, component_specs, example_inputs, libtorch_113_ops,
                                      ops_missing_in_libtorch_113)
from models.stage2 import Stage2UNet
from models.unet3d import UNet3DConditionModel

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY_DIR = os.path.join(REPO, "models", "tiny")


def outputs_equal(test: unittest.TestCase, a, b, what: str, atol: float = 1e-5) -> None:
    a, b = as_tuple(a), as_tuple(b)
    test.assertEqual(len(a), len(b), what)
    for x, y in zip(a, b):
        test.assertEqual(x.shape, y.shape, what)
        test.assertLessEqual((x - y).abs().max().item(), atol, what)


class CommittedTinyDirectory(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.manifest = mf.read_manifest(TINY_DIR, verify_hashes=True)
        cls.specs = {s.role: s for s in component_specs("tiny")}

    def test_manifest_structure_and_constants(self):
        m = self.manifest
        self.assertEqual((m["format"], m["format_version"], m["name"]), (mf.FORMAT, 1, "tiny"))
        self.assertEqual([c["role"] for c in m["components"]], list(mf.ROLES))
        d = m["defaults"]
        self.assertEqual((d["fps"], d["latent_scale"]), (8, 0.18215))
        self.assertEqual((d["stage1"]["num_inference_steps"], d["stage1"]["guidance_scale"], d["stage1"]["height"]),
                         (50, 9.0, 64))
        s2 = d["stage2"]
        self.assertEqual((s2["window_frames"], s2["conditioning_frames"], s2["num_inference_steps"], s2["eta"],
                          s2["guidance_scale"]), (16, 8, 50, 1.0, 7.5))
        s3 = d["stage3"]
        self.assertEqual((s3["num_inference_steps"], s3["guidance_scale"], s3["guidance_rescale"], s3["noise_level"],
                          s3["start_timestep"], s3["chunk_frames"], s3["overlap_frames"], s3["height"]),
                         (30, 7.5, 0.2, 600, 599, 24, 8, 128))
        self.assertEqual(m["schedulers"]["stage2"]["config"]["steps_offset"], 1)
        self.assertEqual(m["schedulers"]["stage3"]["config"]["scale_max"], 4.0)
        self.assertEqual(set(m["files"]), {f"{r}.pt" for r in mf.ROLES} | {"tokenizer.json", "tokenizer_config.json"})
        tok = m["tokenizers"]["text_encoder"]
        self.assertEqual((tok["max_length"], tok["pad_id"]), (77, 0))
        self.assertLess(tok["eos_id"], aux_config("clip_text", "tiny").vocab_size)

    def test_shapes_and_operators(self):
        known = libtorch_113_ops()
        for c in self.manifest["components"]:
            self.assertTrue(c["aten_ops"], c["role"])
            self.assertEqual([op for op in c["aten_ops"] if op not in known], [], c["role"])
            self.assertFalse(any("scaled_dot_product" in op for op in c["aten_ops"]))
            for t in c["inputs"] + c["outputs"]:
                self.assertTrue(all(isinstance(x, int) and x > 0 for x in mf.eval_shape(t["shape"], c["example_dims"])))
        unet2 = next(c for c in self.manifest["components"] if c["role"] == "unet_stage2")
        self.assertEqual(mf.eval_shape(unet2["inputs"][3]["shape"], unet2["example_dims"]), [2, 3, 8, 64, 64])
        self.assertEqual(mf.eval_dim("H/8", {"H": 64}), 8)
        self.assertEqual(mf.eval_dim("8*h", {"h": 3}), 24)
        with self.assertRaises(ValueError):
            mf.eval_dim("H/8", {"H": 60})
        self.assertEqual(ops_missing_in_libtorch_113(["aten::add.Tensor", "aten::scaled_dot_product_attention"]),
                         ["aten::scaled_dot_product_attention"])

    def test_torchscript_equals_eager_for_every_component(self):
        """The committed files hold exactly the seed-0 random modules, and their TorchScript == eager."""
        factories = build_random("tiny", int(re.search(r"seed (\d+)", self.manifest["created_by"]["weights"])[1]))
        for role, spec in self.specs.items():
            eager = factories[role]().eval()
            scripted = torch.jit.load(os.path.join(TINY_DIR, spec.file))
            self.assertEqual([a.name for a in scripted.forward.schema.arguments[1:]], [t.name for t in spec.inputs])
            dims = dict(spec.example_dims, B=1)
            inputs = example_inputs(spec, dims, torch.float32, "cpu", seed=3, vocab=1024)
            with torch.no_grad():
                want, got = as_tuple(eager(*inputs)), as_tuple(scripted(*inputs))
            outputs_equal(self, want, got, role)
            for out_spec, g in zip(spec.outputs, got):
                self.assertEqual(list(g.shape), mf.eval_shape(out_spec.shape, dims), role)
                self.assertGreater(g.abs().max().item(), 0, role)

    def test_committed_directory_is_reproducible(self):
        """``python3 -m models.export --config tiny`` reproduces the committed files (re-export after model changes).

        TorchScript archives embed the absolute path of the exporting checkout in their ``*.debug_pkl`` members
        (source ranges for error messages), so a clone elsewhere (CI) writes different bytes there. Compare every
        archive member except those; everything that defines the model (code, constants, weights) must be equal.
        """
        out = tempfile.mkdtemp()
        try:
            run = subprocess.run([sys.executable, "-m", "models.export", "--config", "tiny", "--out", out],
                                 cwd=REPO, capture_output=True, text=True, timeout=300)
            self.assertEqual(run.returncode, 0, run.stderr)
            with open(os.path.join(out, mf.MANIFEST_NAME)) as f:
                fresh = json.load(f)
            self.assertEqual(sorted(fresh["files"]), sorted(self.manifest["files"]))
            stale = "models/tiny is stale: re-run /usr/bin/python3 -m models.export --config tiny --out models/tiny"
            for name in fresh["files"]:
                a, b = os.path.join(out, name), os.path.join(TINY_DIR, name)
                if not name.endswith(".pt"):
                    with open(a, "rb") as fa, open(b, "rb") as fb:
                        self.assertEqual(fa.read(), fb.read(), f"{name}: {stale}")
                    continue
                self.assertEqual(_archive_members(a), _archive_members(b), f"{name}: {stale}")
        finally:
            shutil.rmtree(out)


def _archive_members(path):
    """{member name without the archive's top folder: sha256} of a TorchScript zip, without ``*.debug_pkl``."""
    import hashlib
    import zipfile
    with zipfile.ZipFile(path) as z:
        return {n.split("/", 1)[1]: hashlib.sha256(z.read(n)).hexdigest()
                for n in z.namelist() if not n.endswith(".debug_pkl")}


def _ldm_vae_keys(sd, levels):
    """Our (diffusers) VAE names -> ldm names (inverse of state_dict_keys_aux.vae_from_ldm), 1x1-conv attention."""
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for k, v in sd.items():
        n = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2.", k)
        n = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", n)
        n = re.sub(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.",
                   lambda m: f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.", n)
        n = re.sub(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                   lambda m: f"decoder.up.{levels - 1 - int(m[1])}.upsample.", n)
        n = re.sub(r"^(encoder|decoder)\.mid_block\.resnets\.(\d)\.", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}.", n)
        m = re.match(r"^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.*)$", n)
        if m:
            n = f"{m[1]}.mid.attn_1.{attn[m[2]]}.{m[3]}"
            v = v[:, :, None, None] if v.dim() == 2 else v
        n = re.sub(r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out.", n).replace(".conv_shortcut.", ".nin_shortcut.")
        out["first_stage_model." + n] = v
    return out


class OfficialLayoutExport(unittest.TestCase):
    """``--streamingt2v-ckpt/--modelscope-dir/--vid2vid-dir`` on synthetic tiny files in the official layouts."""

    @classmethod
    def setUpClass(cls):
        torch.manual_seed(5)
        cls.tmp = tempfile.mkdtemp()
        t = cls.tmp
        cls.src = {"unet_stage2": Stage2UNet(TINY).eval(), "apm_image_encoder": APMImageEncoder(TINY.clip, TINY.resampler),
                   "unet_stage1": UNet3DConditionModel(TINY.unet), "text_encoder": build_aux_model("clip_text", "tiny"),
                   "enhancer_unet": build_aux_model("vid2vid_unet", "tiny")}
        vae, enh_vae = build_aux_model("vae", "tiny"), build_aux_model("vae", "tiny")
        cls.src.update(vae_encoder=vae.video_encoder(), vae_decoder=vae.video_decoder(),
                       enhancer_vae_encoder=enh_vae.video_encoder(), enhancer_vae_decoder=enh_vae.video_decoder())
        with torch.no_grad():   # make the zero-initialised CAM/APM weights matter
            for name, p in cls.src["unet_stage2"].named_parameters():
                if name.endswith("alpha") or "proj_out" in name:
                    p.add_(torch.randn(p.shape) * 0.1)
        ckpt = {("unet." + k[4:]) if k.startswith("cam.") else k: v for k, v in cls.src["unet_stage2"].state_dict().items()}
        apm = cls.src["apm_image_encoder"]
        ckpt.update({"image_encoder.model.visual." + k: v for k, v in apm.visual.state_dict().items()})
        ckpt.update({"resampler." + k: v for k, v in apm.resampler.state_dict().items()})
        ckpt.update({"image_encoder.model.logit_scale": torch.tensor(1.0), "vae.post_quant_conv.bias": torch.zeros(4),
                     "text_encoder.text_model.final_layer_norm.weight": torch.ones(64)})
        cls.ckpt_path = os.path.join(t, "streaming_t2v.ckpt")
        torch.save({"state_dict": ckpt, "epoch": 3}, cls.ckpt_path)
        ms = os.path.join(t, "modelscope")
        for sub in ("unet", "text_encoder", "vae", "tokenizer", "scheduler"):
            os.makedirs(os.path.join(ms, sub))
        torch.save(cls.src["unet_stage1"].state_dict(), os.path.join(ms, "unet", "diffusion_pytorch_model.bin"))
        text_sd = dict(cls.src["text_encoder"].state_dict(), **{"text_model.embeddings.position_ids": torch.arange(77)[None]})
        torch.save(text_sd, os.path.join(ms, "text_encoder", "pytorch_model.bin"))
        torch.save(vae.state_dict(), os.path.join(ms, "vae", "diffusion_pytorch_model.bin"))
        cls.tok = tk.tiny_tokenizer()
        with open(os.path.join(ms, "tokenizer", "vocab.json"), "w") as f:
            json.dump(cls.tok.vocab, f)
        with open(os.path.join(ms, "tokenizer", "merges.txt"), "w") as f:
            f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in cls.tok.merges) + "\n")
        with open(os.path.join(ms, "tokenizer", "special_tokens_map.json"), "w") as f:
            json.dump({"pad_token": "<|endoftext|>"}, f)   # pad differs from the enhancer's 0
        with open(os.path.join(ms, "scheduler", "scheduler_config.json"), "w") as f:
            json.dump(dict(mf.MODELSCOPE_DDIM_CONFIG, _diffusers_version="0.15.0.dev0"), f)
        v2v = os.path.join(t, "vid2vid")
        os.makedirs(v2v)
        torch.save({"module." + k: v for k, v in cls.src["enhancer_unet"].state_dict().items()},
                   os.path.join(v2v, "non_ema_0035000.pth"))
        oc_cfg = aux_config("openclip_text", "tiny")
        full_tower = type(build_aux_model("openclip_text", "tiny"))(type(oc_cfg)(**{**oc_cfg.__dict__, "penultimate": False}))
        cls.src["enhancer_text_encoder"] = build_aux_model("openclip_text", "tiny")
        cls.src["enhancer_text_encoder"].load_state_dict(
            {k: v for k, v in full_tower.state_dict().items() if not k.startswith(f"transformer.resblocks.{oc_cfg.layers - 1}.")})
        oc = dict(full_tower.state_dict(), text_projection=torch.zeros(64, 64), logit_scale=torch.tensor(4.6))
        oc["visual.conv1.weight"] = torch.zeros(8, 3, 4, 4)
        torch.save(oc, os.path.join(v2v, "open_clip_pytorch_model.bin"))
        levels = len(aux_config("vae", "tiny").block_out_channels)
        ldm = _ldm_vae_keys(enh_vae.state_dict(), levels)
        ldm["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(1)
        torch.save({"state_dict": ldm}, os.path.join(v2v, "v2-1_512-ema-pruned.ckpt"))
        cls.ms, cls.v2v = ms, v2v
        cls.out = os.path.join(t, "out")
        cls.manifest = export_directory(cls.out, "tiny", streamingt2v_ckpt=cls.ckpt_path, modelscope_dir=ms,
                                        vid2vid_dir=v2v, log=lambda *_: None)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_every_component_reproduces_its_source_module(self):
        for spec in component_specs("tiny"):
            loaded = torch.jit.load(os.path.join(self.out, spec.file))
            inputs = example_inputs(spec, dict(spec.example_dims, B=1), torch.float32, "cpu", seed=9, vocab=1024)
            with torch.no_grad():
                outputs_equal(self, self.src[spec.role].eval()(*inputs), loaded(*inputs), spec.role)

    def test_manifest_of_official_export(self):
        m = mf.read_manifest(self.out)
        self.assertEqual(m["created_by"]["weights"], "official")
        self.assertEqual(m["tokenizers"]["text_encoder"]["pad_id"], self.tok.eos_id)   # special_tokens_map.json
        self.assertEqual(m["tokenizers"]["enhancer_text_encoder"]["pad_id"], 0)      # open_clip.tokenize
        self.assertEqual(m["schedulers"]["stage1"]["config"]["_diffusers_version"], "0.15.0.dev0")
        self.assertIn("PAIR/StreamingT2V", json.dumps(m["sources"]))

    def test_strict_loading_and_argument_errors(self):
        ckpt = torch.load(self.ckpt_path)
        del ckpt["state_dict"]["resampler.context_embedding.0.weight"]
        bad = os.path.join(self.tmp, "bad.ckpt")
        torch.save(ckpt, bad)
        with self.assertRaisesRegex(RuntimeError, "resampler.context_embedding.0.weight"):
            export_directory(os.path.join(self.tmp, "bad"), "tiny", streamingt2v_ckpt=bad, modelscope_dir=self.ms,
                             vid2vid_dir=self.v2v, verify=False, log=lambda *_: None)
        with self.assertRaisesRegex(ExportError, "all of"):
            export_directory(os.path.join(self.tmp, "x"), "tiny", streamingt2v_ckpt=self.ckpt_path, log=lambda *_: None)
        self.assertEqual(main(["--config", "full", "--out", os.path.join(self.tmp, "y")]), 1)


if __name__ == "__main__":
    unittest.main()
