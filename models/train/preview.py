"""Visual checks during/after training (PNG grids; no PIL needed).

    /usr/bin/python3 -m models.train.preview vae --out DIR            # VAE reconstructions (top: input)
    /usr/bin/python3 -m models.train.preview stage1 --out DIR [--ckpt] # DDIM samples of the stage-1 model
"""
import argparse
import os

import numpy as np
import torch

from .. import world
from ..configs_aux import build_aux_model
from ..configs_unet import get_config, widths_of
from ..unet3d import UNet3DConditionModel
from . import common as C
from .stages import ddim_sample


def _grid(rows):  # rows of [F,3,H,W] in [-1,1]
    img = np.concatenate([np.concatenate(list(r.transpose(0, 2, 3, 1)), axis=1) for r in rows], axis=0)
    return ((img + 1) * 127.5).clip(0, 255).astype(np.uint8)


def _vae(out, ckpt):
    vae = build_aux_model("vae", C.NET_CONFIG)
    if ckpt:
        vae.load_state_dict(torch.load(os.path.join(out, "ckpt_vae.pt"), map_location="cpu")["modules"]["vae"])
    else:
        vae.load_state_dict(torch.load(os.path.join(out, "vae.pt"), map_location="cpu"))
    return vae.eval()


@torch.no_grad()
def preview_vae(out, ckpt, path):
    vae = _vae(out, ckpt)
    x, caps, _, _ = C.world_clips(np.random.default_rng(123), 4, 8, 64, (0, 300))
    mean, _ = vae.video_encoder()(x)
    rec = vae.video_decoder()(mean).clamp(-1, 1)
    rows = []
    for i in range(4):
        rows += [x[i].transpose(0, 1).numpy(), rec[i].transpose(0, 1).numpy()]
    world.write_png(path, _grid(rows))
    print("l1", float((rec - x).abs().mean()), path)


@torch.no_grad()
def preview_stage1(out, ckpt, path, steps=25, guidance=9.0, prompts=None):
    vae = _vae(out, False)
    text = build_aux_model("clip_text", C.NET_CONFIG)
    if ckpt:
        st = torch.load(os.path.join(out, "ckpt_stage1.pt"), map_location="cpu")["modules"]
        unet_sd, text_sd = st["ema_unet"], st["ema_text"]
    else:
        st = torch.load(os.path.join(out, "stage1.pt"), map_location="cpu")
        unet_sd, text_sd = st["unet_stage1"], st["text_encoder"]
    unet = UNet3DConditionModel(widths_of(get_config(C.NET_CONFIG).unet, unet_sd))    # any --unet-channels
    unet.load_state_dict(unet_sd), text.load_state_dict(text_sd)
    unet.eval(), text.eval()
    prompts = prompts or world.sample_captions(4, seed=7, kind=C.WORLD)
    g = torch.Generator().manual_seed(0)
    rows = []
    for p in prompts:
        ctx = text(C.token_ids(["", p]))
        z = torch.randn(1, 4, 16, 8, 8, generator=g)
        z = ddim_sample(lambda zz, tt: unet(zz, tt, ctx), z, steps, guidance)
        v = vae.video_decoder()(z).clamp(-1, 1)[0].transpose(0, 1).numpy()
        rows.append(v[::2])
        print(p)
    world.write_png(path, _grid(rows))
    print(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["vae", "stage1"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--ckpt", action="store_true", help="read the running checkpoint instead of the final file")
    ap.add_argument("--png", default=None)
    ap.add_argument("--guidance", type=float, default=9.0)
    args = ap.parse_args()
    C.setup_torch(1)
    png = args.png or os.path.join(args.out, f"preview_{args.what}.png")
    if args.what == "vae":
        preview_vae(args.out, args.ckpt, png)
    else:
        preview_stage1(args.out, args.ckpt, png, guidance=args.guidance)


if __name__ == "__main__":
    main()
