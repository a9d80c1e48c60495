"""The whole training recipe (models.train.all) end to end at a few steps per component: both processes, every
component, the run-3/4 flags, one component again with --ranks 2, the stage2_turn experiment, then --collect. Checks what the exporter needs: every role's weights, finite, on
the CPU. The same run with --device cuda is skipped (visibly) without a CUDA device."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = {"vae_encoder", "vae_decoder", "enhancer_vae_encoder", "enhancer_vae_decoder", "text_encoder", "unet_stage1",
         "unet_stage2", "apm_image_encoder", "enhancer_unet", "enhancer_text_encoder"}


def _assert_same(test: unittest.TestCase, a, b, where: str) -> None:
    """``a`` and ``b`` hold the same structure and bit-identical tensors (same dtype and shape)."""
    test.assertIs(type(a), type(b), where)
    if isinstance(a, torch.Tensor):
        test.assertEqual((a.dtype, a.shape), (b.dtype, b.shape), where)
        test.assertTrue(torch.equal(a, b), where)
    elif isinstance(a, dict):
        test.assertEqual(list(a), list(b), where)
        for k in a:
            _assert_same(test, a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        test.assertEqual(len(a), len(b), where)
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(test, x, y, f"{where}[{i}]")
    else:
        test.assertEqual(a, b, where)


def _run(out: str, device: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "models.train.all", "--out", out, "--steps-scale", "0.002", "--clips", "6",
           "--budget-minutes", "10", "--device", device, *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


class TrainSmokeTest(unittest.TestCase):
    def _recipe(self, device: str) -> None:
        with tempfile.TemporaryDirectory() as out:
            r = _run(out, device, "--stage2-base", "stage1_more", "--cam-init", "small", "--cam-lr-mult", "5",
                     "--motion-loss", "1", "--batch-mult", "2")
            self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
            weights = torch.load(os.path.join(out, "weights.pt"))
            self.assertEqual(set(weights), ROLES)
            for role, sd in weights.items():
                for k, v in sd.items():
                    self.assertEqual(v.device.type, "cpu", f"{role}.{k} saved on {v.device}")
                    if v.dtype.is_floating_point:
                        self.assertTrue(bool(torch.isfinite(v).all()), f"{role}.{k} not finite")
            with open(os.path.join(out, "losses.jsonl")) as f:
                logged = f.read()
            for component in ("vae", "vae_ft", "stage1", "stage1_more", "stage1_centred", "stage2", "enhancer"):
                self.assertIn(f'"component": "{component}"', logged)
            self.assertIn("cam_gain", logged)
            self.assertNotIn('"component": "stage2_turn"', logged)       # an experiment, not part of the recipe
            # stage2_turn on its own, from the finished stage 2, after encoding the turn set (not part of the recipe)
            r = _run(out, device, "--only", "stage2_turn", "--steps", "stage2_turn=3")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("models.train.latents --out", r.stderr)       # says how to encode the missing turn set
            for k in (0, 1):
                subprocess.run([sys.executable, "-m", "models.train.latents", "--out", out, "--part", f"{k}/2",
                                "--turn", "--clips", "6"], cwd=ROOT, check=True, capture_output=True, timeout=300,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
            r = _run(out, device, "--only", "stage2_turn", "--steps", "stage2_turn=3", "--turn-p", "0.5",
                     "--terminal-p", "0.15", "--turn-terminal-p", "0.5", "--turn-base-unet", "stage1_centred",
                     "--vertical-p", "0.75", "--tone-p", "0.5", "--drift-p", "1.0", "--stage2-lr", "2e-4")
            self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
            self.assertTrue(os.path.exists(os.path.join(out, "stage2_turn.pt")))
            with open(os.path.join(out, "losses.jsonl")) as f:
                logged = f.read()
            self.assertIn('"component": "stage2_turn"', logged)
            self.assertIn("base UNet from stage1_centred", logged)
            # half re-toned (tone.py), the others drifted (drift.py)
            self.assertIn("tone share 0.5 (gain 0.1, offset 0.12); drift share 1.0 (size 1.2, colour 0.15); "
                          "lr 0.0002", logged)
            self.assertRegex(logged, '"turn_dir_gain_(vertical|horizontal)"')     # the per-axis turn gain
            r = _run(out, device, "--only", "stage2_turn", "--vertical-p", "1.5")
            self.assertEqual(r.returncode, 2, r.stderr[-500:])
            self.assertIn("--vertical-p must be in [0, 1], not 1.5", r.stderr)
            r = _run(out, device, "--only", "stage2_turn", "--tone-p", "-0.1")
            self.assertEqual(r.returncode, 2, r.stderr[-500:])
            self.assertIn("--tone-p must be in [0, 1], not -0.1", r.stderr)
            r = _run(out, device, "--only", "stage2_turn", "--drift-p", "1.5")
            self.assertEqual(r.returncode, 2, r.stderr[-500:])
            self.assertIn("--drift-p must be in [0, 1], not 1.5", r.stderr)
            r = _run(out, device, "--only", "stage2_turn", "--drift-p", "0.5", "--drift-size", "0.8")
            self.assertEqual(r.returncode, 2, r.stderr[-500:])
            self.assertIn("--drift-size must be >= 1 and --drift-colour >= 0, not 0.8, 0.15", r.stderr)
            # one component again, data-parallel in two processes (--ranks 2): rank 0 writes, rank 1 logs nothing
            for f in ("stage1_centred.pt", "ckpt_stage1_centred.pt"):
                if os.path.exists(os.path.join(out, f)):
                    os.remove(os.path.join(out, f))
            r = _run(out, device, "--only", "stage1_centred", "--ranks", "2", "--steps", "stage1_centred=3",
                     "--vertical-p", "0.75")
            self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
            self.assertTrue(os.path.exists(os.path.join(out, "stage1_centred.pt")))
            with open(os.path.join(out, "stage1_centred_rank1_log.txt")) as f:
                self.assertNotIn("Error", f.read())
            # --collect alone rewrites weights.pt from the finished parts and trains nothing more
            before = os.path.getsize(os.path.join(out, "losses.jsonl"))
            r = _run(out, device, "--collect")
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
            self.assertEqual(os.path.getsize(os.path.join(out, "losses.jsonl")), before)
            self._collect_checkpoint(out, device)

    def _collect_checkpoint(self, out: str, device: str) -> None:
        """--collect --collect-checkpoint stage2_turn takes the EMA modules of ckpt_stage2_turn.pt (written by the
        trainers' own save_checkpoint, weights = stage2_turn.pt + 0.5) instead of stage2_turn.pt."""
        sys.path.insert(0, ROOT)
        from models.train import common as C
        r = _run(out, device, "--collect", "--collect-checkpoint", "stage2_turn")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("stage2_turn has not reached its first checkpoint", r.stderr)
        r = _run(out, device, "--collect-checkpoint", "stage2_turn")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--collect-checkpoint needs --collect", r.stderr)
        from models.apm import APMImageEncoder
        from models.configs_unet import get_config
        from models.stage2 import Stage2UNet
        final = torch.load(os.path.join(out, "stage2_turn.pt"))
        net = get_config("tiny")
        mods = {"ema_model": Stage2UNet(net), "ema_apm": APMImageEncoder(net.clip, net.resampler)}
        for m, role in zip(mods.values(), ("unet_stage2", "apm_image_encoder")):
            m.load_state_dict(final[role])
            with torch.no_grad():
                for p in m.parameters():
                    p.add_(0.5)
        opt = torch.optim.SGD([p for m in mods.values() for p in m.parameters()], lr=0.1)
        C.save_checkpoint(os.path.join(out, "ckpt_stage2_turn.pt"), 7, mods, opt, np.random.default_rng(0))
        r = _run(out, device, "--collect", "--collect-checkpoint", "stage2_turn")
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertIn("at step 7", r.stdout)
        weights = torch.load(os.path.join(out, "weights.pt"))
        self.assertEqual(set(weights), ROLES)
        for role in ("unet_stage2", "apm_image_encoder"):
            params = dict(mods["ema_model" if role == "unet_stage2" else "ema_apm"].named_parameters())
            self.assertTrue(params)
            for k, v in final[role].items():
                want = v + 0.5 if k in params else v       # parameters moved, buffers as they were
                torch.testing.assert_close(weights[role][k], want, rtol=0, atol=0)

    def test_cpu_recipe_end_to_end(self):
        self._recipe("cpu")

    @unittest.skipUnless(torch.cuda.is_available(), "no CUDA device: the --device cuda recipe is not run here")
    def test_cuda_recipe_end_to_end(self):
        self._recipe("cuda")

    def test_recipe_3_trains_the_shipped_chain_in_one_run(self):
        """--recipe 3: stage 1 -> stage1_centred (from stage 1) -> stage2_turn from stage1_centred's UNet with the
        turn set (both ranks), vae_ft and the enhancer beside stage 1; no stage1_more, no stage2.pt. Run through
        scripts/gpu/train-on-device.sh with DEVICE=cpu (the script a lent GPU runs; its default TRAIN_ARGS are
        recipe 3's), so its file list and the export commands in its header are checked too."""
        with tempfile.TemporaryDirectory() as out:
            r = _run(out, "cpu", "--recipe", "3", "--vertical-p-stage1", "1.5")
            self.assertEqual(r.returncode, 2, r.stderr[-500:])
            self.assertIn("--vertical-p-stage1 must be in [0, 1], not 1.5", r.stderr)
            r = _run(out, "cpu", "--recipe", "3", "--boundary-weight", "-1")
            self.assertEqual(r.returncode, 2, r.stderr[-500:])
            self.assertIn("--boundary-weight must be >= 0, not -1.0", r.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            work, back, export = (os.path.join(tmp, d) for d in ("train", "out", "export"))
            args = ("--recipe 3 --steps-scale 0.002 --clips 6 --cam-init small --cam-lr-mult 5 --motion-loss 1 "
                    "--terminal-p 0.15 --turn-p 0.5 --vertical-p 0.6 --vertical-p-stage1 0.75 --boundary-weight 2")
            r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu", "train-on-device.sh")], cwd=ROOT,
                               capture_output=True, text=True, timeout=600,
                               env={**os.environ, "OMP_NUM_THREADS": "1", "DEVICE": "cpu", "OUT": back,
                                    "WORK": work, "TORCH_PYTHON": sys.executable, "BUDGET_MIN": "10",
                                    "TRAIN_ARGS": args})
            self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
            self.assertNotIn("missing", r.stdout)
            self.assertEqual(set(os.listdir(back)), {"vae.npz", "vae_ft.npz", "stage1.npz", "stage1_centred.npz",
                                                     "stage2_turn.npz", "enhancer.npz", "losses.jsonl", "train.log"})
            for f in ("latents_turn_0of2.pt", "latents_turn_1of2.pt"):
                self.assertTrue(os.path.exists(os.path.join(work, f)), f)
            for f in ("stage1_more.pt", "stage2.pt"):
                self.assertFalse(os.path.exists(os.path.join(work, f)), f)
            with open(os.path.join(back, "losses.jsonl")) as f:
                logged = f.read()
            self.assertIn("started from stage1_centred's UNet (frame encoder input dependence", logged)
            self.assertIn("turn share 0.5", logged)
            with open(os.path.join(work, "stage2_turn_rank1_log.txt")) as f:
                self.assertNotIn("Error", f.read())
            # the script header's commands: the packed files that came back, unpacked and collected into weights.pt
            npz = sorted(os.path.join(back, f) for f in os.listdir(back) if f.endswith(".npz"))
            subprocess.run([sys.executable, "-m", "models.train.portable", "unpack", *npz, "--out-dir", export],
                           cwd=ROOT, check=True, capture_output=True, timeout=300)
            shutil.copy(os.path.join(back, "losses.jsonl"), export)
            for f in ("vae", "vae_ft", "stage1", "stage1_centred", "stage2_turn", "enhancer"):   # bit for bit
                _assert_same(self, torch.load(os.path.join(work, f + ".pt")), torch.load(os.path.join(export, f + ".pt")), f)
            subprocess.run([sys.executable, "-m", "models.train.all", "--out", export, "--collect"], cwd=ROOT,
                           check=True, capture_output=True, timeout=300)
            weights = torch.load(os.path.join(export, "weights.pt"))
            self.assertEqual(set(weights), ROLES)
            turn = torch.load(os.path.join(work, "stage2_turn.pt"))
            for k, v in turn["unet_stage2"].items():          # stage 2 comes from stage2_turn.pt
                self.assertTrue(torch.equal(weights["unet_stage2"][k], v), k)

    def test_recipe_3_options_are_checked_by_the_trainers(self):
        sys.path.insert(0, ROOT)
        from models.train import stages as S
        with self.assertRaisesRegex(ValueError, "fresh starts stage2_turn"):
            S.train_stage2("/nonexistent", fresh=True)
        with self.assertRaisesRegex(ValueError, "base must be"):
            S.train_stage2("/nonexistent", base="stage2")
        with self.assertRaisesRegex(ValueError, "centred_from must be"):
            S.train_stage1("/nonexistent", more=True, centred=True, centred_from="stage2")

    def test_misspelt_component_counts_are_refused(self):
        with tempfile.TemporaryDirectory() as out:
            for flag in ("--steps", "--stop-at"):
                r = _run(out, "cpu", flag, "stage3=10")
                self.assertEqual(r.returncode, 2, r.stderr[-500:])
                self.assertIn("expected COMPONENT=N", r.stderr)
            self.assertEqual(os.listdir(out), [])

    def test_ranks_need_one_component(self):
        with tempfile.TemporaryDirectory() as out:
            r = _run(out, "cpu", "--ranks", "2")
            self.assertEqual(r.returncode, 2, r.stderr[-500:])
            self.assertIn("--ranks N (N > 1) needs --only COMPONENT", r.stderr)

    def test_cuda_without_a_device_is_a_clear_error(self):
        if torch.cuda.is_available():
            self.skipTest("this machine has CUDA")
        with tempfile.TemporaryDirectory() as out:
            r = _run(out, "cuda", "--only", "vae")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("sees no CUDA device", r.stderr)


if __name__ == "__main__":
    unittest.main()
