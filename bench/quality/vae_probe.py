"""What a VAE keeps of a square's corners and of an object's colour (session 17).

Sessions 14 and 16 found the shipped VAE losing both: a square's round trip fills 0.858 of its bounding box (a
square is read from 0.9), and an object's colour offset of up to +-0.15 per channel survives at 12 % (the decoder
puts palette colours back). This probe measures one VAE, given as a training file or as an exported model, on
fixed world renders (64x64, the size stages 1 and 2 work at):

* ``square_render`` / ``square_vae``: [bounding-box fill, share of frames read as a square] of the benchmark's 8
  square prompts (object at the centre, 16 frames) before and after the round trip (encoder mean, decoder);
  ``circle_vae``: the same scenes drawn as circles, after the round trip (a square-reading circle is a false hit);
* ``latent_shape_sep``: ||E(square) - E(circle)|| / ||E(square) - E(no object)|| over the same scenes: how much of
  what the object puts into the latents is its shape (``pixel_shape_sep``: the same ratio on the pixels, for
  scale; a diffusion model can only learn the square-circle difference its latents carry);
* ``colour_gain``: least-squares slope of the round trip's change on the input's change when the object's
  pixels get an offset ~ U(-0.15, 0.15) per channel (24 prompts, frames 0-15, one offset per prompt, seed 5):
  1 keeps an off-palette colour, 0 puts the palette's back;
* ``l1``: mean absolute round-trip error on the 24 prompts' frames 0-15 (pixels in [-1, 1]).

    /usr/bin/python3 bench/quality/vae_probe.py --model models/default          # an exported model
    /usr/bin/python3 bench/quality/vae_probe.py --vae DIR/vae.pt [--decoder DIR/vae_ft.pt]   # a training run's

Prints one JSON line; the same numbers on every run (one thread, fixed seeds)."""
import argparse
import dataclasses
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", ".."))
import metrics as M  # noqa: E402
from models import world  # noqa: E402
from models.configs_aux import build_aux_model  # noqa: E402
from models.train import common as C  # noqa: E402
from models.train.latents import centre_scene  # noqa: E402

COLOUR = 0.15


def load_vae(model_dir=None, vae_file=None, decoder_file=None):
    """(encode, decode) on [B, 3, F, H, W] videos: encode gives the scaled posterior mean."""
    if model_dir:
        enc = torch.jit.load(os.path.join(model_dir, "vae_encoder.pt")).eval()
        dec = torch.jit.load(os.path.join(model_dir, "vae_decoder.pt")).eval()
        return (lambda x: enc(x)[0]), dec
    vae = build_aux_model("vae", C.NET_CONFIG)
    vae.load_state_dict(torch.load(vae_file, map_location="cpu"))
    enc = vae.eval().video_encoder()
    if decoder_file:
        ft = build_aux_model("vae", C.NET_CONFIG)
        ft.load_state_dict(torch.load(decoder_file, map_location="cpu"))
        dec = ft.eval().video_decoder()
    else:
        dec = vae.video_decoder()
    return (lambda x: enc(x)[0]), dec


def read_squares(video: torch.Tensor, prompts) -> list:
    """[mean bounding-box fill, share of frames read as a square] of the prompt-coloured object."""
    fill, square = [], []
    for frames, p in zip(M.video_u8(video), prompts):
        lab, names = M.labels(frames, M.palette(p))
        masks = lab == names.index(world.parse_caption(p)["colour"])
        f = [M.bbox_fill(c) for c in (M.object_component(m) for m in masks) if c is not None]
        got = [v for v in (M.shape_of(m) for m in masks) if v]
        fill.append(float(np.mean(f)) if f else float("nan"))
        square.append(got.count("square") / max(1, len(got)))
    return [round(float(np.nanmean(fill)), 3), round(float(np.mean(square)), 3)]


def _video(scenes, t0: int = 0, n: int = 16) -> torch.Tensor:
    return torch.stack([torch.from_numpy(world.render(s, t0, n, 64)).permute(1, 0, 2, 3) for s in scenes])


def probe(encode, decode, n: int = 24) -> dict:
    prompts = M.load_prompts(n)
    sq = [p for p in prompts if " square " in p]
    rng = np.random.default_rng(7)
    squares = [centre_scene(world.scene_from_caption(p, rng, "core"), 0) for p in sq]
    circles = [dataclasses.replace(s, shape="circle") for s in squares]
    empty = [dataclasses.replace(s, size=1e-3) for s in squares]
    out = {}
    with torch.no_grad():
        xs, xc, xe = _video(squares), _video(circles), _video(empty)
        zs, zc, ze = encode(xs), encode(xc), encode(xe)
        out["square_render"] = read_squares(xs, sq)
        out["square_vae"] = read_squares(decode(zs), sq)
        out["circle_vae"] = read_squares(decode(zc), sq)
        out["latent_shape_sep"] = round(float((zs - zc).norm() / (zs - ze).norm()), 4)
        out["pixel_shape_sep"] = round(float((xs - xc).norm() / (xs - xe).norm()), 4)
        crng = np.random.default_rng(5)
        num = den = 0.0
        l1 = []
        for i, p in enumerate(prompts):
            s = M.reference_scene(i, p)
            frames, masks = world.render_with_masks(s, 0, 16, 64)
            d = crng.uniform(-COLOUR, COLOUR, size=3).astype(np.float32)
            moved = np.clip(frames + masks[:, None] * d[None, :, None, None], -1.0, 1.0)
            x0, x1 = (torch.from_numpy(v.astype(np.float32)).permute(1, 0, 2, 3)[None] for v in (frames, moved))
            r0, r1 = decode(encode(x0)), decode(encode(x1))
            num += float(((r1 - r0) * (x1 - x0)).sum())
            den += float(((x1 - x0) ** 2).sum())
            l1.append(float((r0.clamp(-1, 1) - x0).abs().mean()))
        out["colour_gain"] = round(num / den, 3)
        out["l1"] = round(float(np.mean(l1)), 4)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="an exported model directory (vae_encoder.pt, vae_decoder.pt)")
    src.add_argument("--vae", help="a training run's vae.pt (AutoencoderKL state dict)")
    ap.add_argument("--decoder", help="with --vae: take the decoder from this file (a run's vae_ft.pt)")
    ap.add_argument("--prompts", type=int, default=24, help="benchmark prompts to use (default 24)")
    args = ap.parse_args(argv)
    if args.decoder and not args.vae:
        ap.error("--decoder needs --vae")
    if not 1 <= args.prompts <= 24:
        ap.error(f"--prompts must be in [1, 24], not {args.prompts}")
    for f in (args.model, args.vae, args.decoder):
        if f and not os.path.exists(f):
            ap.error(f"{f}: no such file or directory")
    C.setup_torch(1)
    encode, decode = load_vae(args.model, args.vae, args.decoder)
    src_name = args.model or (args.vae + (f" + decoder {args.decoder}" if args.decoder else ""))
    print(json.dumps({"probe": "vae", "source": src_name, **probe(encode, decode, args.prompts)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
