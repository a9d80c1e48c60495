"""Can the direction words alone carry up/down to a frozen stage-1 UNet? (session 8, models/train/README.md
"Runs 10-12")

Trains only the token-embedding rows of "up" and "down" of the text encoder (textual inversion; every other
weight frozen, Adam without weight decay, the other rows' gradients zeroed) with the stage-1 loss on the centred
set's up/down clips (``--terminal-p`` of them at pure noise, as ``stage1_centred``), and prints every 50 steps
the first-step vertical sensitivity: the relative x0 error (swapped - own) / own on 32 up/down clips at t = 999
from pure noise, with the caption's up and down swapped. It stays near 0 when the UNet has no up/down path the
words could reach (run 5's stage 1: 0.8 % -> 1.3 % in 300 steps at lr 3e-3).

    /usr/bin/python3 -m models.train.word_probe --text /tmp/st2v-train2/stage1.pt \\
        --unet /tmp/st2v-train8a/stage1_centred.pt --latents /tmp/st2v-train8a --steps 300 --lr 3e-3
"""
import argparse
import sys
import time

import numpy as np
import torch

from ..configs_aux import build_aux_model
from ..configs_unet import get_config, widths_of
from ..unet3d import UNet3DConditionModel
from . import common as C
from . import latents as L
from .stages import diffusion_loss


def swap_vertical(caption: str) -> str:
    words = caption.split(" ")
    return " ".join({"up": "down", "down": "up"}.get(w, w) for w in words)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--text", required=True, help="a finished stage1.pt (its text_encoder)")
    ap.add_argument("--unet", required=True, help="a finished stage-1 file (its unet_stage1), e.g. stage1_centred.pt")
    ap.add_argument("--latents", required=True, help="directory with the centred latent set")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--terminal-p", type=float, default=0.5)
    args = ap.parse_args(argv)
    C.setup_torch(1)
    text = build_aux_model("clip_text", C.NET_CONFIG)
    text.load_state_dict(torch.load(args.text, map_location="cpu")["text_encoder"])
    unet_sd = torch.load(args.unet, map_location="cpu")["unet_stage1"]
    unet = UNet3DConditionModel(widths_of(get_config(C.NET_CONFIG).unet, unet_sd))    # any --unet-channels
    unet.load_state_dict(unet_sd)
    unet.eval().requires_grad_(False)
    text.eval().requires_grad_(False)
    emb = text.text_model.embeddings.token_embedding.weight
    rows = [int(C.token_ids([w])[0, 1]) for w in ("up", "down")]
    start = emb.detach()[rows].clone()
    emb.requires_grad_(True)
    mask = torch.zeros_like(emb)
    mask[rows] = 1.0
    opt = torch.optim.Adam([emb], lr=args.lr)
    data = L.load(args.latents, centred=True)
    ac = C.ddpm_alphas_cumprod()
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    held = np.nonzero(data.vertical_clips())[0][:32]

    def vertical_gain() -> float:
        with torch.no_grad():
            z0, w = data.z[held], data.w[held]
            caps = data.captions(held)
            t = ac.numel() - 1
            zt = torch.randn(z0.shape, generator=torch.Generator().manual_seed(t))
            al, sg = float(ac[t].sqrt()), float((1 - ac[t]).sqrt())
            tt = torch.full((len(held),), float(t))
            errs = []
            for cc in (caps, [swap_vertical(c) for c in caps]):
                x0 = al * zt - sg * unet(zt, tt, text(C.token_ids(cc)))
                errs.append(float(((x0 - z0) ** 2 * w).sum() / w.sum()))
            return (errs[1] - errs[0]) / errs[0]

    print(f"step 0: first-step vertical sensitivity {vertical_gain():.4f}", flush=True)
    t0, losses = time.time(), []
    for step in range(1, args.steps + 1):
        z0, w, ids, _ = data.windows(rng, 8, vertical_p=1.0)
        caps, _ = C.drop_captions(rng, data.captions(ids), 0.1)
        loss = diffusion_loss(lambda zt, tt: unet(zt, tt, text(C.token_ids(caps))), z0, w, ac, motion_weight=1.0,
                              terminal_p=args.terminal_p)
        opt.zero_grad()
        loss.backward()
        emb.grad.mul_(mask)
        opt.step()
        losses.append(float(loss))
        if step % 50 == 0:
            moved = (emb.detach()[rows] - start).norm(dim=1).tolist()
            print(f"step {step}: loss {np.mean(losses[-50:]):.4f}, first-step vertical sensitivity "
                  f"{vertical_gain():.4f}, rows moved {moved[0]:.3f} / {moved[1]:.3f}, {time.time() - t0:.0f} s",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
