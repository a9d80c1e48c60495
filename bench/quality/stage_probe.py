"""Per-stage probes of an exported model directory: what stage 1 and stage 2 each do on the benchmark prompts,
without the other stage in the way (numbers for models/train/README.md).

    /usr/bin/python3 bench/quality/stage_probe.py stage1 --model models/default [--guidance 5] [--seeds 2]
    /usr/bin/python3 bench/quality/stage_probe.py stage2 --model models/default [--guidance 4] [--cond turn] [--replace 0.9]
    /usr/bin/python3 bench/quality/stage_probe.py words --model models/default
    /usr/bin/python3 bench/quality/stage_probe.py vae --model models/default
    /usr/bin/python3 bench/quality/stage_probe.py shapes --model models/default [--seeds 2]
    /usr/bin/python3 bench/quality/stage_probe.py shapes2 --model models/default [--seeds 2] [--replace 0.9] [--init-start 8]
    /usr/bin/python3 bench/quality/stage_probe.py corners --model models/default

* ``stage1``: 16-frame samples of ``unet_stage1.pt`` (DDIM, 25 steps, v-prediction, classifier-free guidance on
  the empty prompt), decoded by ``vae_decoder.pt``; colour / shape / direction of each sample as metrics.py
  detects them on a whole video; ``dir_ok_by_axis``: the direction right on the prompts that say left/right
  (``horizontal``) and up/down (``vertical``); the stage-2 probe has ``new_dir_by_axis`` likewise.
* ``stage2``: one stage-2 window per prompt conditioned on a TRUE render: CAM frames = frames 8-15 of the
  prompt's world clip, anchor = its frame 0 (DDIM, 20 steps, guidance on empty prompt + grey anchor, as the
  pipeline). ``copy_absdiff`` / ``copy_pos_err``: mean |pixel| difference and object-centroid distance (px of 64)
  between the window's positions 0-7 and the conditioning frames they re-generate; ``new_dir``: direction of the
  8 new frames alone; ``chain_dir``: direction of conditioning + new frames (16 frames); ``new_shape``,
  ``new_colour``; ``new_shape_by_kind`` (session 19): per prompt shape, the windows whose 8 new frames read as
  that shape. ``--cond turn``: the CAM frames show the same scene moving another way (each of the three other
  directions for a third of the prompts), meeting the prompt's clip at the first new frame; ``new_dir`` then says
  whether the new frames follow the caption, ``new_cond_dir`` whether they keep the conditioning frames' direction.
  ``--cond corner``: the prompt's clip with its object at pixel (57, 58) in the first conditioning frame, wrapping
  around the right and bottom edges (where run 7's one stalled video stopped). ``new_still``: the share of
  windows whose 8 new frames move the object < 0.1 px/frame or lose it (metrics.py's still window). ``seam_jump``:
  the whole-frame mean colour change (|R| + |G| + |B|, grey levels) from the last conditioning frame to the first
  new frame; ``copy_tone`` the same between the window's re-generated copy of that frame (position 7) and the
  frame itself, ``step_tone`` between the copy and the first new frame (seam_jump <= copy_tone + step_tone: a
  large copy_tone says the window re-draws the scene in a tone of its own); ``vae_tone`` the same between the
  frame and its VAE round trip (encoder mean, decoder): the part of copy_tone that the VAE alone accounts for.
  ``--cond toned`` (session 10): the prompt's clip under one random global colour transform per window
  (``models/train/tone.py``'s default ranges; the anchor untouched); ``tone_follow``: the share of the
  transform's shift of the mean colour that the 8 new frames keep (1: they continue the conditioning frames'
  tone, 0: they go back to the untouched clip's). ``--replace S`` (session 11): the first round(S x 20) steps
  put the conditioning frames' own latents (encoder mean), noised to the step's level, in positions 0-7, as the
  pipeline's ``stage2.replaceOverlap`` does (lib/pipeline/replace-overlap.ts).
* ``words``: which caption words the stage-1 UNet uses. True renders of the prompts (16 frames, encoded by
  ``vae_encoder.pt``) are noised at t = 300, 600, 800, 950 (same noise for every caption); the cell-weighted x0
  error (cells of the object x4, as in training) with the prompt is compared with the error after replacing its
  direction by the opposite one, its shape or its colour by the next one, or the whole caption by "": the value
  is (swapped - own) / own, averaged over t; ~0 means the UNet ignores that word. Measured on clips whose object
  starts anywhere (``anywhere``) and at the frame centre (``centred``, the stage1_centred training windows).
  ``*_first_step``: the same at the sampler's first step, t = 999 with pure noise as the input.
  ``direction_horizontal`` / ``direction_vertical``: the direction swap on the prompts that say left/right and
  up/down alone (session 8: run 7's UNets read left/right but not up/down). ``--unet stage2``:
  the stage-2 UNet, given the clip's true frames 0-7 as CAM input and its frame 0 as the APM anchor, scored on the
  new frames 8-15 (``anywhere`` clips only).
* ``shapes`` (session 10): are the squares drawn round by stage 1? Stage-1 samples of the square prompts and of
  the same prompts with "circle" or "triangle" instead (same noise for the three): the object's mean bounding-box
  fill per shape word (upright square 1, circle 0.79, triangle 0.5; metrics.py reads >= 0.9 as a square) and the
  share of frames read as the prompt's shape.
* ``shapes2`` (session 19): does stage 2 keep a square it is shown? For the square prompts, one stage-2 window
  conditioned as in ``stage2`` (true frames 8-15 as CAM input, frame 0 as anchor, guidance 4, ``--replace``) on
  the prompt's clip and on the same clip with a circle or a triangle (caption word swapped to match; same noise
  for the three): mean bounding-box fill of the 8 new frames' object and the share of them read as the prompt's
  shape, per shape (``--seeds`` noises; as ``shapes`` does for stage 1). ``--init-start K`` (session 20): SDEdit
  from the conditioning frames: the window starts at the K-th of the 20 timesteps from its conditioning frames'
  latents with the last one repeated in positions 8-15, noised to that step (K = 8, 12, 16: strength 0.6, 0.4, 0.2).
* ``corners`` (session 14): where the squares' corners are lost. True renders of the square prompts (object at the
  frame centre, 16 frames), the VAE round trip, and the stage-1 UNet's x0 estimate from them noised at t = 100 ..
  950 with the caption saying "square" or "circle" (same noise), decoded: mean bounding-box fill and share of frames
  read as a square for each. ``--size R``: every square of radius R instead (the world's are 12-15).
* ``vae``: the ceiling the decoder sets: the benchmark's true renders of the prompts (240 frames, as metrics.py's
  ``world`` row) through ``vae_encoder.pt`` (posterior mean) and ``vae_decoder.pt``, then metrics.py's colour /
  shape / direction detection on the reconstruction; ``shape_by_kind``: shapes recognised per prompt shape;
  ``l1``: mean |reconstruction - render| in [-1, 1] units. What the decoder cannot draw from a true latent, no
  diffusion model can show through it.
Prints one JSON line. Same seeds, same numbers (one thread)."""
import argparse
import dataclasses
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
from models.train.latents import centre_scene, turn_scene  # noqa: E402
from models.train import tone as T  # noqa: E402
from models.train.stages import ddim_sample  # noqa: E402
from vae_probe import read_squares  # noqa: E402


def _axis(prompt: str) -> str:
    """'vertical' for a prompt that says up or down, else 'horizontal'."""
    return "vertical" if world.parse_caption(prompt).get("direction") in ("up", "down") else "horizontal"


def _by_axis(prompts, hits) -> dict:
    """{axis: share of the prompts of that axis whose hit is true} (``hits`` per prompt, one round of prompts or
    several rounds concatenated)."""
    axes = [_axis(prompts[i % len(prompts)]) for i in range(len(hits))]
    return {a: round(float(np.mean([h for h, b in zip(hits, axes) if b == a])), 3)
            for a in ("horizontal", "vertical") if a in axes}


def _loader(model_dir: str):
    """name -> the TorchScript module ``model_dir/name`` in eval mode."""
    return lambda name: torch.jit.load(os.path.join(model_dir, name)).eval()


def stage1(model_dir: str, n: int, seeds: int, guidance: float, steps: int = 25) -> dict:
    load = _loader(model_dir)
    unet, text, dec = load("unet_stage1.pt"), load("text_encoder.pt"), load("vae_decoder.pt")
    prompts = M.load_prompts(n)
    scores, dirs, dir_hits = Counter(), Counter(), []
    with torch.no_grad():
        ctx = text(C.token_ids([""] * len(prompts) + prompts))
        for seed in range(seeds):
            z = torch.randn(len(prompts), 4, 16, 8, 8, generator=torch.Generator().manual_seed(seed))
            z = ddim_sample(lambda zz, tt: unet(zz, tt, ctx), z, steps, guidance)
            for p, frames in zip(prompts, M.video_u8(dec(z))):
                r = M.analyse(frames, p)
                for k in ("colour_ok", "shape_ok", "dir_ok"):
                    scores[k] += r[k]
                dirs[r["detected"][2]] += 1
                dir_hits.append(r["dir_ok"])
    total = len(prompts) * seeds
    return {"stage": 1, "samples": total, "guidance": guidance, **{k: round(v / total, 3) for k, v in scores.items()},
            "dir_ok_by_axis": _by_axis(prompts, dir_hits), "directions_seen": dict(dirs)}


def _centroids(frames: np.ndarray, prompt: str):
    """Object centroids per frame (metrics.centroids), None where fewer than 11 object pixels."""
    lab, names = M.labels(frames, M.palette(prompt))
    colour = world.parse_caption(prompt).get("colour")
    masks = lab == (names.index(colour) if colour in names else -1)
    return M.centroids(masks, masks.reshape(len(masks), -1).sum(-1) > 10)


def stage2(model_dir: str, n: int, guidance: float, steps: int = 20, seed: int = 0, cond_kind: str = "true",
           replace: float = 0.0) -> dict:
    load = _loader(model_dir)
    unet, text, apm, dec = load("unet_stage2.pt"), load("text_encoder.pt"), load("apm_image_encoder.pt"), \
        load("vae_decoder.pt")
    prompts = M.load_prompts(n)
    rng = np.random.default_rng(5)
    scenes = [world.scene_from_caption(p, rng, "core") for p in prompts]
    if cond_kind == "corner":   # the object at pixel (57, 58) at frame 8, wrapping around two edges (run 7's stall)
        scenes = [centre_scene(s, 8, world.UNITS * 25 / 64, world.UNITS * 26 / 64) for s in scenes]
    clips = [torch.from_numpy(world.render(s, 0, 16, 64)).permute(1, 0, 2, 3) for s in scenes]
    others = [None] * len(prompts)
    if cond_kind == "turn":     # CAM frames 8-15 of the scene moving another way, meeting the prompt's at frame 16
        others = [[d for d in world.DIRECTIONS if d != s.direction][i % 3] for i, s in enumerate(scenes)]
        clips = [torch.cat([c[:, :8], torch.from_numpy(world.render(turn_scene(s, 16, d), 8, 8, 64)).permute(1, 0, 2, 3)], 1)
                 for c, s, d in zip(clips, scenes, others)]
    cond = torch.stack([c[:, 8:16] for c in clips])          # [B,3,8,64,64] in [-1,1]
    anchor = torch.stack([c[:, 0] for c in clips])
    b = len(prompts)
    plain = M.video_u8(cond).astype(np.float32).mean(axis=(1, 2, 3))     # [B,3] the untouched frames' mean colour
    if cond_kind == "toned":    # the same frames under one global colour transform per window (anchor untouched)
        cond = T.apply_tone(cond, *T.random_tone(np.random.default_rng(7), b))
    with torch.no_grad():
        ctx = torch.cat([torch.cat([text(C.token_ids([""] * b)), apm(torch.zeros_like(anchor))], 1),
                         torch.cat([text(C.token_ids(prompts)), apm(anchor)], 1)])
        z = torch.randn(b, 4, 16, 8, 8, generator=torch.Generator().manual_seed(seed))
        known = load("vae_encoder.pt")(cond)[0]                     # the conditioning frames' latents (mean)
        z = ddim_sample(lambda zz, tt: unet(zz, tt, ctx, torch.cat([cond, cond])), z, steps, guidance,
                        known=known, replace_steps=round(replace * steps))
        gen = M.video_u8(dec(z))
        roundtrip = M.video_u8(dec(known))                                # the conditioning frames through the VAE
    true = M.video_u8(cond)
    acc, new_hits, kinds, kept = Counter(), [], Counter(), Counter()
    tone = lambda f: f.astype(np.float32).mean((0, 1))    # noqa: E731  frame [H,W,3] -> mean colour [3]
    for j, (p, g, c, other) in enumerate(zip(prompts, gen, true, others)):
        acc["copy_absdiff"] += float(np.abs(g[:8].astype(np.float32) - c.astype(np.float32)).mean())
        dist = [math.hypot((a[0] - q[0] + 32) % 64 - 32, (a[1] - q[1] + 32) % 64 - 32)
                for a, q in zip(_centroids(g[:8], p), _centroids(c, p)) if a and q]
        acc["copy_pos_err"] += float(np.mean(dist)) if dist else 32.0
        new, chain = M.analyse(g[8:], p), M.analyse(np.concatenate([c, g[8:]]), p)
        acc["new_dir"] += new["dir_ok"]
        new_hits.append(new["dir_ok"])
        if other is not None:
            acc["new_cond_dir"] += float(new["detected"][2] == other)
        acc["chain_dir"] += chain["dir_ok"]
        acc["new_shape"] += new["shape_ok"]
        kind = world.parse_caption(p)["shape"]
        kinds[kind] += 1
        kept[kind] += int(new["shape_ok"])
        acc["new_colour"] += new["colour_ok"]
        acc["new_still"] += float(new["still_windows"] > 0)
        # the seam: whole-frame mean colour, last conditioning frame -> first new frame (sum of |R|, |G|, |B| change)
        acc["seam_jump"] += float(np.abs(tone(g[8]) - tone(c[7])).sum())
        acc["copy_tone"] += float(np.abs(tone(g[7]) - tone(c[7])).sum())
        acc["step_tone"] += float(np.abs(tone(g[8]) - tone(g[7])).sum())
        acc["vae_tone"] += float(np.abs(tone(roundtrip[j][7]) - tone(c[7])).sum())
        if cond_kind == "toned":    # share of the transform's shift of the mean colour that the new frames keep
            shift = c.astype(np.float32).mean(axis=(0, 1, 2)) - plain[j]
            kept = g[8:].astype(np.float32).mean(axis=(0, 1, 2)) - plain[j]
            acc["tone_follow"] += float(kept @ shift / max(float(shift @ shift), 1e-6))
    return {"stage": 2, "cond": cond_kind, "windows": b, "guidance": guidance, "replace": replace,
            **{k: round(v / b, 3) for k, v in acc.items()}, "new_dir_by_axis": _by_axis(prompts, new_hits),
            "new_shape_by_kind": {k: f"{kept[k]}/{kinds[k]}" for k in sorted(kinds)}}


OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def swap_word(prompt: str, what: str) -> str:
    """``prompt`` with its direction (opposite), shape or colour (next in the core world) replaced, or ""."""
    a = world.parse_caption(prompt)
    if what == "empty":
        return ""
    if what == "direction":
        old, new = a["direction"], OPPOSITE[a["direction"]]
    else:
        pool = world.CORE["shapes" if what == "shape" else "colours"]
        old = a[what]
        new = pool[(pool.index(old) + 1) % len(pool)]
    words = prompt.split(" ")
    return " ".join(new if w == old else w for w in words)


def words(model_dir: str, n: int, ts=(300, 600, 800, 950), which: str = "stage1") -> dict:
    load = _loader(model_dir)
    text, enc = load("text_encoder.pt"), load("vae_encoder.pt")
    prompts = M.load_prompts(n)
    ac = C.ddpm_alphas_cumprod()
    axes = np.array([_axis(p) for p in prompts])
    axis_sel = {a: torch.from_numpy(np.nonzero(axes == a)[0]) for a in ("horizontal", "vertical") if (axes == a).any()}
    out = {}
    frames = slice(None)
    with torch.no_grad():
        ctx = {k: text(C.token_ids(prompts if k == "own" else [swap_word(p, k) for p in prompts]))
               for k in ("own", "direction", "shape", "colour", "empty")}
        if which == "stage1":
            unet, places = load("unet_stage1.pt"), ("anywhere", "centred")
        else:     # stage 2: CAM frames = the clip's true frames 0-7, anchor = frame 0; error on the new frames 8-15
            s2, apm, places, frames = load("unet_stage2.pt"), load("apm_image_encoder.pt"), ("anywhere",), slice(8, 16)
        for place in places:
            rng = np.random.default_rng(7)
            clips, masks = [], []
            for p in prompts:
                sc = world.scene_from_caption(p, rng, "core")
                if place == "centred":      # object at the frame centre at frame 0, as latents._plan(centred=True)
                    sc = centre_scene(sc, 0)
                f, m = world.render_with_masks(sc, 0, 16, 64)
                clips.append(torch.from_numpy(f).permute(1, 0, 2, 3))
                masks.append(torch.from_numpy(m))
            z0 = enc(torch.stack(clips))[0]
            w = 1.0 + 3.0 * torch.nn.functional.max_pool3d(torch.stack(masks)[:, None].float(), (1, 8, 8))
            if which == "stage2":
                video = torch.stack(clips)
                tokens = apm(video[:, :, 0])
                unet = lambda zt, tt, c: s2(zt, tt, torch.cat([c, tokens], 1), video[:, :, :8])  # noqa: E731
            w = w * torch.zeros_like(w).index_fill_(2, torch.arange(16)[frames], 1.0)   # only the scored frames
            rel, first = Counter(), Counter()
            for t in list(ts) + [999]:
                noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(t))
                al, sg = float(ac[t].sqrt()), float((1 - ac[t]).sqrt())
                # t = 999: the sampler's first step, z_t = pure noise (no alpha z0 term)
                zt, tt = (noise if t == 999 else al * z0 + sg * noise), torch.full((len(prompts),), float(t))
                sq = {k: ((al * zt - sg * unet(zt, tt, c)) - z0) ** 2 * w for k, c in ctx.items()}
                for k in ctx:
                    if k == "own":
                        continue
                    # all prompts, and the direction word for the prompts of each axis alone
                    for key, sel in [(k, slice(None))] + ([(f"direction_{a}", axis_sel[a]) for a in axis_sel]
                                                         if k == "direction" else []):
                        e, e_own = float(sq[k][sel].sum() / w[sel].sum()), float(sq["own"][sel].sum() / w[sel].sum())
                        if t == 999:
                            first[key] = (e - e_own) / e_own
                        else:
                            rel[key] += (e - e_own) / e_own / len(ts)
            out[place] = {k: round(v, 4) for k, v in rel.items()}
            out[place + "_first_step"] = {k: round(v, 4) for k, v in first.items()}
    return {"stage": "words", "unet": which, "clips": len(prompts), "timesteps": list(ts), **out}


def _read_shape(prompt: str, frames: np.ndarray, fills: dict, hits: dict) -> None:
    """Appends the object's mean bounding-box fill over ``frames`` and the share of them metrics.shape_of reads as
    the prompt's shape to ``fills`` / ``hits`` under the prompt's shape."""
    a = world.parse_caption(prompt)
    lab, names = M.labels(frames, M.palette(prompt))
    masks = lab == names.index(a["colour"])
    f = [M.bbox_fill(c) for c in (M.object_component(m) for m in masks) if c is not None]
    got = [v for v in (M.shape_of(m) for m in masks) if v]
    fills.setdefault(a["shape"], []).append(float(np.mean(f)) if f else float("nan"))
    hits.setdefault(a["shape"], []).append(got.count(a["shape"]) / max(1, len(got)))


def shapes(model_dir: str, n: int, seeds: int, guidance: float, steps: int = 25) -> dict:
    """Stage-1 samples of the benchmark's square prompts and of the same prompts with "circle" and "triangle" in
    place of "square" (same noise for the three): the mean bounding-box fill of the object per shape word, and the
    share of frames metrics.shape_of reads as the prompt's shape."""
    load = _loader(model_dir)
    unet, text, dec = load("unet_stage1.pt"), load("text_encoder.pt"), load("vae_decoder.pt")
    sq = [p for p in M.load_prompts(n) if " square " in p]
    prompts = [p.replace(" square ", f" {k} ") for k in ("square", "circle", "triangle") for p in sq]
    fills, hits = {}, {}
    with torch.no_grad():
        ctx = text(C.token_ids([""] * len(prompts) + prompts))
        for seed in range(seeds):
            z = torch.randn(len(sq), 4, 16, 8, 8, generator=torch.Generator().manual_seed(seed)).repeat(3, 1, 1, 1, 1)
            z = ddim_sample(lambda zz, tt: unet(zz, tt, ctx), z, steps, guidance)
            for p, frames in zip(prompts, M.video_u8(dec(z))):
                _read_shape(p, frames, fills, hits)
    return {"stage": "shapes", "samples_per_shape": len(sq) * seeds, "guidance": guidance,
            "fill": {k: round(float(np.nanmean(v)), 3) for k, v in fills.items()},
            "frames_read_as_prompt_shape": {k: round(float(np.mean(v)), 3) for k, v in hits.items()}}


def shapes2(model_dir: str, n: int, seeds: int, guidance: float, replace: float, steps: int = 20,
            init_start: int = 0) -> dict:
    """See the module docstring (``shapes2``)."""
    load = _loader(model_dir)
    unet, text, apm, enc, dec = (load(f"{k}.pt") for k in ("unet_stage2", "text_encoder", "apm_image_encoder",
                                                           "vae_encoder", "vae_decoder"))
    sq = [p for p in M.load_prompts(n) if " square " in p]
    rng = np.random.default_rng(5)
    scenes = [world.scene_from_caption(p, rng, "core") for p in sq]
    prompts, clips = [], []
    for k in ("square", "circle", "triangle"):
        for p, sc in zip(sq, scenes):
            prompts.append(p.replace(" square ", f" {k} "))
            clips.append(torch.from_numpy(world.render(dataclasses.replace(sc, shape=k), 0, 16, 64)).permute(1, 0, 2, 3))
    cond = torch.stack([c[:, 8:16] for c in clips])
    anchor = torch.stack([c[:, 0] for c in clips])
    b = len(prompts)
    fills, hits = {}, {}
    with torch.no_grad():
        ctx = torch.cat([torch.cat([text(C.token_ids([""] * b)), apm(torch.zeros_like(anchor))], 1),
                         torch.cat([text(C.token_ids(prompts)), apm(anchor)], 1)])
        known = enc(cond)[0]
        init = torch.cat([known, known[:, :, -1:].expand(-1, -1, 8, -1, -1)], 2) if init_start else None
        for seed in range(seeds):
            z = torch.randn(len(sq), 4, 16, 8, 8, generator=torch.Generator().manual_seed(seed)).repeat(3, 1, 1, 1, 1)
            z = ddim_sample(lambda zz, tt: unet(zz, tt, ctx, torch.cat([cond, cond])), z, steps, guidance,
                            known=known, replace_steps=round(replace * steps), init=init, start=init_start)
            for p, frames in zip(prompts, M.video_u8(dec(z))[:, 8:]):     # the 8 new frames
                _read_shape(p, frames, fills, hits)
    return {"stage": "shapes2", "windows_per_shape": len(sq) * seeds, "guidance": guidance, "replace": replace,
            **({"init_start": init_start} if init_start else {}),
            "fill": {k: round(float(np.nanmean(v)), 3) for k, v in fills.items()},
            "frames_read_as_prompt_shape": {k: round(float(np.mean(v)), 3) for k, v in hits.items()}}


def corners(model_dir: str, n: int, size: float = 0.0, ts=(100, 300, 500, 700, 850, 950)) -> dict:
    load = _loader(model_dir)
    text, enc, dec, unet = (load(f"{k}.pt") for k in ("text_encoder", "vae_encoder", "vae_decoder", "unet_stage1"))
    sq = [p for p in M.load_prompts(n) if " square " in p]
    ac = C.ddpm_alphas_cumprod()

    def read(video: torch.Tensor) -> list:
        return read_squares(video, sq)

    rng = np.random.default_rng(7)
    scenes = [centre_scene(world.scene_from_caption(p, rng, "core"), 0) for p in sq]
    if size:        # the world's objects have radius 12-15 units; a square's half side is 0.82 x that
        scenes = [dataclasses.replace(sc, size=size) for sc in scenes]
    video = torch.stack([torch.from_numpy(world.render_with_masks(sc, 0, 16, 64)[0]).permute(1, 0, 2, 3)
                         for sc in scenes])
    out = {"render": read(video)}
    with torch.no_grad():
        z0 = enc(video)[0]
        out["vae"] = read(dec(z0))
        for word in ("square", "circle"):
            ctx = text(C.token_ids([p.replace(" square ", f" {word} ") for p in sq]))
            for t in ts:
                noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(t))
                al, sg = float(ac[t].sqrt()), float((1 - ac[t]).sqrt())
                zt = al * z0 + sg * noise
                out[f"x0_{word}_t{t}"] = read(dec(al * zt - sg * unet(zt, torch.full((len(sq),), float(t)), ctx)))
    return {"stage": "corners", "clips": len(sq), "size": size or "world",
            "values": "[bbox fill, share of frames read as a square]", **out}


def vae(model_dir: str, n: int, frames: int = 240, chunk: int = 16) -> dict:
    load = _loader(model_dir)
    enc, dec = load("vae_encoder.pt"), load("vae_decoder.pt")
    prompts = M.load_prompts(n)
    scores, kinds, right, l1, drift, size = Counter(), Counter(), Counter(), [], [], []
    with torch.no_grad():
        for i, p in enumerate(prompts):
            s = M.reference_scene(i, p)
            x = torch.from_numpy(world.render(s, 0, frames, 64)).permute(1, 0, 2, 3)[None]   # [1,3,F,H,W]
            rec = torch.cat([dec(enc(x[:, :, a:a + chunk])[0]) for a in range(0, frames, chunk)], 2)
            l1.append(float((rec.clamp(-1, 1) - x).abs().mean()))
            r = M.analyse(M.video_u8(rec)[0], p)
            drift.append(r["colour_drift"])
            size.append(r["size_ratio"])
            for k in ("colour_ok", "shape_ok", "dir_ok"):
                scores[k] += r[k]
            shape = world.parse_caption(p)["shape"]
            kinds[shape] += 1
            right[shape] += int(r["shape_ok"])
    return {"stage": "vae", "prompts": len(prompts), "frames": frames,
            **{k: round(v / len(prompts), 3) for k, v in scores.items()},
            "shape_by_kind": {k: f"{right[k]}/{kinds[k]}" for k in sorted(kinds)}, "l1": round(float(np.mean(l1)), 4),
            "colour_drift": round(float(np.nanmean(drift)), 2), "size_ratio": round(float(np.nanmean(size)), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=["stage1", "stage2", "words", "vae", "shapes", "shapes2", "corners"])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--seeds", type=int, default=2, help="stage1, shapes, shapes2: samples per prompt")
    ap.add_argument("--unet", choices=["stage1", "stage2"], default="stage1",
                    help="words: which UNet (stage2: CAM frames = the clip's true frames 0-7, anchor = frame 0, "
                         "error on frames 8-15)")
    ap.add_argument("--guidance", type=float, default=None, help="default: 5 (stage 1), 4 (stage 2)")
    ap.add_argument("--cond", choices=["true", "turn", "corner", "toned"], default="true",
                    help="stage2: CAM frames of the prompt's clip (true) or of the same scene moving another way, "
                         "meeting the prompt's at the window's first new frame (turn; session 6), or of the prompt's "
                         "clip with its object wrapping around the bottom-right corner (corner; session 7), or of the prompt's "
                         "clip under one random global colour transform (toned; session 10)")
    ap.add_argument("--size", type=float, default=0.0,
                    help="corners: every square's size (radius, world units of 64; default: the prompts' own, 12-15)")
    ap.add_argument("--replace", type=float, default=0.0,
                    help="stage2, shapes2: share of the steps (from the first) whose overlap positions get the "
                         "conditioning frames' own noised latents, as the pipeline's stage2.replaceOverlap (session 11)")
    ap.add_argument("--init-start", type=int, default=0,
                    help="shapes2: start at this of the 20 steps from the conditioning frames' latents (SDEdit; "
                         "session 20); 0: from pure noise, as the pipeline")
    args = ap.parse_args()
    if not 0 <= args.init_start < 20:
        ap.error(f"--init-start must be in [0, 19], not {args.init_start}")
    if args.size < 0:
        ap.error(f"--size must be >= 0 (0: the prompts' own sizes), not {args.size}")
    if not 0.0 <= args.replace <= 1.0:
        ap.error(f"--replace must be in [0, 1], not {args.replace}")
    C.setup_torch(1)
    if args.stage == "vae":
        res = vae(args.model, args.prompts)
    elif args.stage == "words":
        res = words(args.model, args.prompts, which=args.unet)
    elif args.stage == "corners":
        res = corners(args.model, args.prompts, args.size)
    elif args.stage == "shapes":
        res = shapes(args.model, args.prompts, args.seeds, 5.0 if args.guidance is None else args.guidance)
    elif args.stage == "shapes2":
        res = shapes2(args.model, args.prompts, args.seeds, 4.0 if args.guidance is None else args.guidance,
                      args.replace, init_start=args.init_start)
    elif args.stage == "stage1":
        res = stage1(args.model, args.prompts, args.seeds, 5.0 if args.guidance is None else args.guidance)
    else:
        res = stage2(args.model, args.prompts, 4.0 if args.guidance is None else args.guidance, cond_kind=args.cond,
                     replace=args.replace)
    print(json.dumps({"model": args.model, **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
