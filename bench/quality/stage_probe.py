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
from models.train.stages import ddim_sample  # noqa: E402


def _to_u8(video: torch.Tensor) -> np.ndarray:  # [B,3,F,H,W] in [-1,1] -> [B,F,H,W,3] uint8
    return ((video.clamp(-1, 1).permute(0, 2, 3, 4, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def stage1(model_dir: str, n: int, seeds: int, guidance: float, steps: int = 25) -> dict:
    load = lambda name: torch.jit.load(os.path.join(model_dir, name)).eval()  # noqa: E731
    unet, text, dec = load("unet_stage1.pt"), load("text_encoder.pt"), load("vae_decoder.pt")
    prompts = M.load_prompts(n)
    scores, dirs = Counter(), Counter()
    with torch.no_grad():
        ctx = text(C.token_ids([""] * len(prompts) + prompts))
        for seed in range(seeds):
            z = torch.randn(len(prompts), 4, 16, 8, 8, generator=torch.Generator().manual_seed(seed))
            z = ddim_sample(lambda zz, tt: unet(zz, tt, ctx), z, steps, guidance)
            for p, frames in zip(prompts, _to_u8(dec(z))):
                r = M.analyse(frames, p)
                for k in ("colour_ok", "shape_ok", "dir_ok"):
                    scores[k] += r[k]
                dirs[r["detected"][2]] += 1
    total = len(prompts) * seeds
    return {"stage": 1, "samples": total, "guidance": guidance, **{k: round(v / total, 3) for k, v in scores.items()},
            "directions_seen": dict(dirs)}


def _centroids(frames: np.ndarray, prompt: str):
    """Object centroids per frame (metrics.centroids), None where fewer than 11 object pixels."""
    lab, names = M.labels(frames, M.palette(prompt))
    colour = world.parse_caption(prompt).get("colour")
    masks = lab == (names.index(colour) if colour in names else -1)
    return M.centroids(masks, masks.reshape(len(masks), -1).sum(-1) > 10)


def stage2(model_dir: str, n: int, guidance: float, steps: int = 20, seed: int = 0) -> dict:
    load = lambda name: torch.jit.load(os.path.join(model_dir, name)).eval()  # noqa: E731
    unet, text, apm, dec = load("unet_stage2.pt"), load("text_encoder.pt"), load("apm_image_encoder.pt"), \
        load("vae_decoder.pt")
    prompts = M.load_prompts(n)
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
        z = ddim_sample(lambda zz, tt: unet(zz, tt, ctx, torch.cat([cond, cond])), z, steps, guidance)
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
