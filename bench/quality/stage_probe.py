"""Per-stage probes of an exported model directory: what stage 1 and stage 2 each do on the benchmark prompts,
without the other stage in the way (numbers for models/train/README.md).

    /usr/bin/python3 bench/quality/stage_probe.py stage1 --model models/default [--guidance 5] [--seeds 2]
    /usr/bin/python3 bench/quality/stage_probe.py stage2 --model models/default [--guidance 4]

* ``stage1``: 16-frame samples of ``unet_stage1.pt`` (DDIM, 25 steps, v-prediction, classifier-free guidance on
  the empty prompt), decoded by ``vae_decoder.pt``; colour / shape / direction of each sample as metrics.py
  detects them on a whole video.
* ``stage2``: one stage-2 window per prompt conditioned on a TRUE render: CAM frames = frames 8-15 of the
  prompt's world clip, anchor = its frame 0 (DDIM, 20 steps, guidance on empty prompt + grey anchor, as the
  pipeline). ``copy_absdiff`` / ``copy_pos_err``: mean |pixel| difference and object-centroid distance (px of 64)
  between the window's positions 0-7 and the conditioning frames they re-generate; ``new_dir``: direction of the
  8 new frames alone; ``chain_dir``: direction of conditioning + new frames (16 frames); ``new_shape``,
  ``new_colour``.
Prints one JSON line. Same seeds, same numbers (one thread)."""
import argparse
import json
import math
import os
import sys
from collections import Counter

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", ".."))
import metrics as M  # noqa: E402
from models import world  # noqa: E402
from models.train import common as C  # noqa: E402


def _prompts(n: int):
    lines = [l.strip() for l in open(os.path.join(HERE, "prompts.txt")) if l.strip() and not l.startswith("#")]
    return lines[:n]


def _ddim(model, z: torch.Tensor, steps: int, guidance: float, call) -> torch.Tensor:
    """DDIM (eta 0) on the ModelScope schedule, v-prediction: x0 = a z - s v, eps = s z + a v."""
    ac = C.ddpm_alphas_cumprod()
    ts = list(range(999, -1, -1000 // steps))
    for i, t in enumerate(ts):
        out_u, out_c = call(torch.cat([z, z]), torch.full((2 * z.shape[0],), float(t))).chunk(2)
        v = out_u + guidance * (out_c - out_u)
        a, a_prev = ac[t], (ac[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0))
        x0, eps = a.sqrt() * z - (1 - a).sqrt() * v, (1 - a).sqrt() * z + a.sqrt() * v
        z = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return z


def _to_u8(video: torch.Tensor) -> np.ndarray:  # [B,3,F,H,W] in [-1,1] -> [B,F,H,W,3] uint8
    return ((video.clamp(-1, 1).permute(0, 2, 3, 4, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def stage1(model_dir: str, n: int, seeds: int, guidance: float, steps: int = 25) -> dict:
    load = lambda name: torch.jit.load(os.path.join(model_dir, name)).eval()  # noqa: E731
    unet, text, dec = load("unet_stage1.pt"), load("text_encoder.pt"), load("vae_decoder.pt")
    prompts = _prompts(n)
    scores, dirs = Counter(), Counter()
    with torch.no_grad():
        ctx = text(C.token_ids([""] * len(prompts) + prompts))
        for seed in range(seeds):
            z = torch.randn(len(prompts), 4, 16, 8, 8, generator=torch.Generator().manual_seed(seed))
            z = _ddim(unet, z, steps, guidance, lambda zz, tt: unet(zz, tt, ctx))
            for p, frames in zip(prompts, _to_u8(dec(z))):
                r = M.analyse(frames, p)
                for k in ("colour_ok", "shape_ok", "dir_ok"):
                    scores[k] += r[k]
                dirs[r["detected"][2]] += 1
    total = len(prompts) * seeds
    return {"stage": 1, "samples": total, "guidance": guidance, **{k: round(v / total, 3) for k, v in scores.items()},
            "directions_seen": dict(dirs)}


def _centroids(frames: np.ndarray, prompt: str):
    lab, names = M.labels(frames, M.palette(prompt))
    colour = world.parse_caption(prompt).get("colour")
    obj = names.index(colour) if colour in names else -1
    out = []
    for mask in lab == obj:
        ys, xs = np.nonzero(mask)
        out.append((M.circular_mean(xs + 0.5, 64), M.circular_mean(ys + 0.5, 64)) if len(xs) > 10 else None)
    return out


def stage2(model_dir: str, n: int, guidance: float, steps: int = 20, seed: int = 0) -> dict:
    load = lambda name: torch.jit.load(os.path.join(model_dir, name)).eval()  # noqa: E731
    unet, text, apm, dec = load("unet_stage2.pt"), load("text_encoder.pt"), load("apm_image_encoder.pt"), \
        load("vae_decoder.pt")
    prompts = _prompts(n)
    rng = np.random.default_rng(5)
    clips = [torch.from_numpy(world.render(world.scene_from_caption(p, rng, "core"), 0, 16, 64)).permute(1, 0, 2, 3)
             for p in prompts]
    cond = torch.stack([c[:, 8:16] for c in clips])          # [B,3,8,64,64] in [-1,1]
    anchor = torch.stack([c[:, 0] for c in clips])
    b = len(prompts)
    with torch.no_grad():
        ctx = torch.cat([torch.cat([text(C.token_ids([""] * b)), apm(torch.zeros_like(anchor))], 1),
                         torch.cat([text(C.token_ids(prompts)), apm(anchor)], 1)])
        z = torch.randn(b, 4, 16, 8, 8, generator=torch.Generator().manual_seed(seed))
        z = _ddim(unet, z, steps, guidance, lambda zz, tt: unet(zz, tt, ctx, torch.cat([cond, cond])))
        gen = _to_u8(dec(z))
    true = _to_u8(cond)
    acc = Counter()
    for p, g, c in zip(prompts, gen, true):
        acc["copy_absdiff"] += float(np.abs(g[:8].astype(np.float32) - c.astype(np.float32)).mean())
        dist = [math.hypot((a[0] - q[0] + 32) % 64 - 32, (a[1] - q[1] + 32) % 64 - 32)
                for a, q in zip(_centroids(g[:8], p), _centroids(c, p)) if a and q]
        acc["copy_pos_err"] += float(np.mean(dist)) if dist else 32.0
        new, chain = M.analyse(g[8:], p), M.analyse(np.concatenate([c, g[8:]]), p)
        acc["new_dir"] += new["dir_ok"]
        acc["chain_dir"] += chain["dir_ok"]
        acc["new_shape"] += new["shape_ok"]
        acc["new_colour"] += new["colour_ok"]
    return {"stage": 2, "windows": b, "guidance": guidance, **{k: round(v / b, 3) for k, v in acc.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=["stage1", "stage2"])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--seeds", type=int, default=2, help="stage1: samples per prompt")
    ap.add_argument("--guidance", type=float, default=None, help="default: 5 (stage 1), 4 (stage 2)")
    args = ap.parse_args()
    C.setup_torch(1)
    if args.stage == "stage1":
        res = stage1(args.model, args.prompts, args.seeds, 5.0 if args.guidance is None else args.guidance)
    else:
        res = stage2(args.model, args.prompts, 4.0 if args.guidance is None else args.guidance)
    print(json.dumps({"model": args.model, **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
