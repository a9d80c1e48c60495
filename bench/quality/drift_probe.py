"""Does stage 2 pull a drifted object back to the APM anchor? (session 16; models/train/drift.py)

    /usr/bin/python3 bench/quality/drift_probe.py --model models/default [--drift cond|anchor|clip] [--replace 0.9]

One stage-2 window per benchmark prompt, sampled twice with the same noise: conditioned on frames 8-15 of the
prompt's true world clip and its frame 0 as the anchor, and again with the object drifted (radius x 1.2 on even
prompts, / 1.2 on odd ones, and one colour offset per prompt of up to +-0.15 per channel on pixels in [-1, 1],
drawn from a fixed seed; ``drift.render_drifted``) in the conditioning frames only (``--drift cond``: does the
window go back to the anchor?), in the anchor only (``anchor``: does it take the anchor's appearance?), or in both
(``clip``: does it keep the appearance that the object has, as it must in a video whose first frames stage 1 drew
at a size and in a tone of their own?). The caption is the same in both. From the 8 new frames of each pair
(object = the pixels that metrics.py labels with the prompt's colour):

* ``size_follow``: log(area drifted / area true) / log(k^2), the share of the drift in the object's area that the
  new frames keep (1: they continue the drifted frames, 0: they are back at the anchor's size);
* ``colour_follow``: (mean object colour drifted - true) . delta / |delta|^2 (delta in grey levels), the same for the
  colour;
* ``cond_size_gain`` / ``cond_colour_gain``: the same measures on the conditioning frames themselves (about 1 by
  construction: a check of the measure);
* ``vae_size_gain`` / ``vae_colour_gain``: the same measures after the VAE's round trip (encoder mean, decoder) of
  the conditioning frames: the share of the drift that any stage 2 could keep through this decoder;
* ``*_noapm``: with the anchor replaced by the grey image in both guidance halves (what the model does with no
  anchor at all, the ablation's view of the same windows).
``--guidance-from K``: the first K of the 20 steps unguided (the conditional prediction alone), guidance from step K
on. Prints one JSON line; the same numbers on every run (one thread, fixed seeds)."""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", ".."))
import metrics as M  # noqa: E402
from models import world  # noqa: E402
from models.train import common as C  # noqa: E402
from models.train import drift as D  # noqa: E402
from models.train.stages import ddim_sample  # noqa: E402


def object_stats(frames: np.ndarray, prompt: str):
    """(mean object area in pixels per frame, mean object colour [3] in grey levels) of ``frames`` [F,H,W,3];
    the object is every pixel metrics.py labels with the prompt's colour (None, None when there is none)."""
    lab, names = M.labels(frames, M.palette(prompt))
    colour = world.parse_caption(prompt).get("colour")
    mask = lab == (names.index(colour) if colour in names else -1)
    if mask.sum() < 11:
        return None, None
    return float(mask.sum()) / len(frames), frames[mask].astype(np.float64).mean(0)


def follow(a, b, k: float, delta: np.ndarray):
    """(size share, colour share) of drifted stats ``b`` relative to true stats ``a`` for a drift (k, delta)."""
    if a[0] is None or b[0] is None:
        return None, None
    size = math.log(b[0] / a[0]) / math.log(k * k)
    colour = float((b[1] - a[1]) @ delta / (delta @ delta))
    return size, colour


def probe(model_dir: str, n: int, guidance: float, replace: float, what: str = "cond", steps: int = 20,
          seed: int = 0, guidance_from: int = 0) -> dict:
    load = lambda name: torch.jit.load(os.path.join(model_dir, name)).eval()     # noqa: E731
    unet, text, apm, dec, enc = (load(f) for f in ("unet_stage2.pt", "text_encoder.pt", "apm_image_encoder.pt",
                                                   "vae_decoder.pt", "vae_encoder.pt"))
    prompts = M.load_prompts(n)
    b = len(prompts)
    rng = np.random.default_rng(5)
    scenes = [world.scene_from_caption(p, rng, "core") for p in prompts]
    ks = [D.SIZE if j % 2 == 0 else 1 / D.SIZE for j in range(b)]
    deltas = np.random.default_rng(7).uniform(-D.COLOUR, D.COLOUR, size=(b, 3))
    true = torch.stack([D.render_drifted(s, 0, 16, 1.0, np.zeros(3)) for s in scenes])
    drifted = torch.stack([D.render_drifted(s, 0, 16, k, d) for s, k, d in zip(scenes, ks, deltas)])
    anchor = torch.cat([true[:, :, 0], (drifted if what in ("anchor", "clip") else true)[:, :, 0]])   # [2B,3,64,64]
    cond = torch.cat([true[:, :, 8:16], (drifted if what in ("cond", "clip") else true)[:, :, 8:16]])  # [2B,3,8,..]
    out = {}
    with torch.no_grad():
        empty, caption = text(C.token_ids([""] * 2 * b)), text(C.token_ids(prompts * 2))
        grey = apm(torch.zeros_like(anchor))
        for tag, img in (("", apm(anchor)), ("_noapm", grey)):
            unc, con = torch.cat([empty, grey], 1), torch.cat([caption, img], 1)
            ctx = torch.cat([unc, con])
            z = torch.randn(b, 4, 16, 8, 8, generator=torch.Generator().manual_seed(seed)).repeat(2, 1, 1, 1, 1)
            z = ddim_sample(lambda zz, tt: unet(zz, tt, ctx, torch.cat([cond, cond])), z, steps, guidance,
                            known=enc(cond)[0], replace_steps=round(replace * steps),
                            guidance_from=guidance_from)
            gen = M.video_u8(dec(z))
            sizes, colours = [], []
            for j, p in enumerate(prompts):
                s, c = follow(object_stats(gen[j, 8:], p), object_stats(gen[b + j, 8:], p), ks[j], deltas[j] * 127.5)
                if s is not None:
                    sizes.append(s)
                    colours.append(c)
            out[f"size_follow{tag}"] = round(float(np.mean(sizes)), 3)
            out[f"colour_follow{tag}"] = round(float(np.mean(colours)), 3)
            out[f"windows_measured{tag}"] = len(sizes)
    cu, du = true[:, :, 8:16], drifted[:, :, 8:16]
    with torch.no_grad():
        rt = [dec(enc(x)[0]) for x in (cu, du)]       # what the VAE keeps of the drift: its round trip
    for tag, (x, y) in (("cond", (cu, du)), ("vae", rt)):   # cond: the measure on the drifted frames themselves
        x, y = M.video_u8(x), M.video_u8(y)
        checks = [follow(object_stats(x[j], p), object_stats(y[j], p), ks[j], deltas[j] * 127.5)
                  for j, p in enumerate(prompts)]
        out[f"{tag}_size_gain"] = round(float(np.mean([c[0] for c in checks if c[0] is not None])), 3)
        out[f"{tag}_colour_gain"] = round(float(np.mean([c[1] for c in checks if c[1] is not None])), 3)
    return {"drift": what, "windows": b, "guidance": guidance, "guidance_from": guidance_from, "replace": replace,
            **out}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--replace", type=float, default=0.9,
                    help="share of the steps whose overlap positions get the conditioning frames' noised latents "
                         "(the pipeline's stage2.replaceOverlap; default 0.9, the shipped model's)")
    ap.add_argument("--drift", choices=["cond", "anchor", "clip"], default="cond",
                    help="where the object drifts: the conditioning frames, the anchor, or both (default: cond)")
    ap.add_argument("--guidance-from", type=int, default=0,
                    help="the first K of the 20 steps unguided (conditional prediction alone); default 0")
    args = ap.parse_args()
    if not 0.0 <= args.replace <= 1.0:
        ap.error(f"--replace must be in [0, 1], not {args.replace}")
    if not 0 <= args.guidance_from <= 20:
        ap.error(f"--guidance-from must be in [0, 20], not {args.guidance_from}")
    if args.prompts < 1:
        ap.error(f"--prompts must be >= 1, not {args.prompts}")
    C.setup_torch(1)
    print(json.dumps({"model": args.model, **probe(args.model, args.prompts, args.guidance, args.replace,
                                                          args.drift, guidance_from=args.guidance_from)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
