"""Stage 3 against ground truth: the enhancer on true 64x64 world renders, scored against the true 128x128 renders.

The benchmark's videos have no ground truth at 128x128, but the world does: the same scene renders at any size.
Two measurements of a model directory's enhancer:

* ``denoise``: its x0 estimate from the latents of bicubic-upsampled 64x64 clips noised to timestep t (on the
  logsnr_cosine_interp schedule), against the latents of the true 128x128 clips, per t; beside it the error of
  the noisy latents themselves (x_t / alpha: what an enhancer that removes no noise gets). An enhancer that does
  not beat that line at low t leaves the sampler's last steps' noise in the frames (speckle).
* ``sdedit``: the library's own stage-3 run (``enhance_true.mjs``: the model's defaults, or --noise-level /
  --steps / --guidance) over the true 64x64 clips of the first N benchmark prompts, then per clip the mean absolute
  error (grey levels) against the true 128x128 frames, beside the bicubic upsampling's error (the baseline every
  enhancer should beat), the high-frequency ratio (mean |Laplacian| of the output / of the truth: 1 = as sharp,
  > 1 = speckle), and the flicker ratio (mean frame-to-frame change / the truth's).

    /usr/bin/python3 bench/quality/enhance_probe.py --model models/default [--prompts 8] [--frames 40] \\
        [--noise-level N] [--steps N] [--guidance W] [--json out.json]

Needs ``npm run build`` (the sdedit part runs dist/); ``--skip-sdedit`` runs the denoise part alone.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import world  # noqa: E402
from models.train import common as C  # noqa: E402
import metrics  # noqa: E402

TIMESTEPS = (20, 50, 100, 200, 300, 400, 500, 599)


def bicubic(lo: np.ndarray, size: int) -> np.ndarray:
    """uint8 [F, size, size, 3], the stage-3 input resize (bicubic, clamped)."""
    x = torch.from_numpy(lo).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 255)
    return y.round().permute(0, 2, 3, 1).numpy().astype(np.uint8)


def high_freq(v: np.ndarray) -> float:
    """Mean |Laplacian| over frames and channels of uint8 [F, H, W, 3]."""
    x = torch.from_numpy(v).permute(0, 3, 1, 2).float()
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return float(F.conv2d(x, k, groups=3).abs().mean())


def flicker(v: np.ndarray) -> float:
    return float(np.abs(np.diff(v.astype(np.float64), axis=0)).mean())


def sdedit_scores(out: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Dict[str, float]:
    b = bicubic(lo, hi.shape[1])
    return {"l1": float(np.abs(out.astype(np.float64) - hi).mean()),
            "l1_bicubic": float(np.abs(b.astype(np.float64) - hi).mean()),
            "hf_ratio": high_freq(out) / max(high_freq(hi), 1e-6),
            "flicker_ratio": flicker(out) / max(flicker(hi), 1e-6)}


def denoise_table(model: str, clips: int = 8, seed: int = 123) -> List[Dict[str, float]]:
    """Per timestep: the enhancer's x0 MSE (latents) and the noisy latents' own (x_t / alpha), on true clips."""
    enc = torch.jit.load(os.path.join(model, "enhancer_vae_encoder.pt"))
    unet = torch.jit.load(os.path.join(model, "enhancer_unet.pt"))
    text = torch.jit.load(os.path.join(model, "enhancer_text_encoder.pt"))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    scenes = [world.sample_scene(rng, "core") for _ in range(clips)]
    lo = torch.from_numpy(np.stack([world.render(s, 50, 4, 64) for s in scenes])).permute(0, 2, 1, 3, 4).contiguous()
    hi = torch.from_numpy(np.stack([world.render(s, 50, 4, 128) for s in scenes])).permute(0, 2, 1, 3, 4).contiguous()
    alphas, sigmas = C.logsnr_cosine_interp()
    rows = []
    with torch.no_grad():
        z_in, z_true = enc(C.upsample2x(lo))[0], enc(hi)[0]
        ctx = text(C.token_ids([world.caption(s) + ", " for s in scenes], pad_id=0))
        for t in TIMESTEPS:
            a, s = float(alphas[t]), float(sigmas[t])
            xt = a * z_in + s * torch.randn(z_in.shape, generator=gen)
            x0 = a * xt - s * unet(xt, torch.full((clips,), float(t)), ctx)
            rows.append({"t": t, "sigma": s, "x0_mse": float(F.mse_loss(x0, z_true)),
                         "noisy_mse": float(F.mse_loss(xt / a, z_true))})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "default"))
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--noise-level", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--seed", type=int, default=33)
    ap.add_argument("--skip-sdedit", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.model, "manifest.json")):
        print(f"enhance_probe: {args.model} is not a model directory (no manifest.json)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    report = {"model": os.path.abspath(args.model), "denoise": denoise_table(args.model)}
    print("| t | sigma | enhancer x0 MSE | noisy latents' MSE (x_t / alpha) |")
    print("|---|---|---|---|")
    for r in report["denoise"]:
        print(f"| {r['t']} | {r['sigma']:.3f} | {r['x0_mse']:.4f} | {r['noisy_mse']:.4f} |")
    if not args.skip_sdedit:
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for i, prompt in enumerate(metrics.load_prompts(args.prompts)):
                lo, hi = metrics.reference_video(i, prompt, args.frames, 64), metrics.reference_video(i, prompt, args.frames, 128)
                src, dst = os.path.join(tmp, f"{i}.rgb"), os.path.join(tmp, f"{i}.out.rgb")
                lo.tofile(src)
                cmd = ["node", os.path.join(ROOT, "bench", "quality", "enhance_true.mjs"), src, str(args.frames), dst,
                       prompt, "--model", args.model, "--seed", str(args.seed)]
                for flag, value in (("--noise-level", args.noise_level), ("--steps", args.steps),
                                    ("--guidance", args.guidance)):
                    if value is not None:
                        cmd += [flag, str(value)]
                run = subprocess.run(cmd, capture_output=True, text=True)
                if run.returncode != 0:
                    print(f"enhance_probe: {' '.join(cmd)} failed:\n{run.stderr[-2000:]}", file=sys.stderr)
                    return 1
                out = np.fromfile(dst, np.uint8).reshape(args.frames, 128, 128, 3)
                rows.append({"prompt": prompt, **sdedit_scores(out, lo, hi)})
        mean = {k: float(np.mean([r[k] for r in rows])) for k in ("l1", "l1_bicubic", "hf_ratio", "flicker_ratio")}
        report["sdedit"] = {"settings": {"noise_level": args.noise_level, "steps": args.steps,
                                         "guidance": args.guidance, "frames": args.frames, "seed": args.seed},
                            "clips": rows, "mean": mean}
        print(f"\nstage 3 on true 64x64 clips ({len(rows)} prompts x {args.frames} frames) against the true 128x128:")
        print("| | L1 (grey levels) | bicubic L1 | high-frequency ratio | flicker ratio |")
        print("|---|---|---|---|---|")
        for r in rows + [{"prompt": "mean", **mean}]:
            print(f"| {r['prompt']} | {r['l1']:.2f} | {r['l1_bicubic']:.2f} | {r['hf_ratio']:.2f} | {r['flicker_ratio']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
