"""How much a stage-2 UNet uses CAM (its conditioning frames), on a fixed batch of the latent dataset.

    /usr/bin/python3 -m models.train.cam_probe --data /tmp/st2v-train3 --model-dir models/default
    /usr/bin/python3 -m models.train.cam_probe --data /tmp/st2v-train3 --ckpt /tmp/st2v-train3/ckpt_stage2.pt

For each timestep t in ``--timesteps`` it prints the cell-weighted v-prediction error with each window's own
conditioning frames (``own``), with the frames of another window of the batch (``swapped``), and their difference
``gain = swapped - own`` (0: CAM ignored; > 0: CAM used), separately for the window's first 8 frames (which
repeat the conditioning frames) and its last 8 (the new ones). Same noise, same text and anchor for both.
``--model-dir``: the exported TorchScript ``unet_stage2.pt``, ``text_encoder.pt``, ``apm_image_encoder.pt``;
``--ckpt``: a stage-2 training checkpoint (its EMA weights, or the raw ones with ``--raw``) with the text encoder of ``<data>/stage1.pt``.
"""
import argparse
import json
import os
import sys
from dataclasses import replace

import torch

from ..apm import APMImageEncoder
from ..configs_aux import build_aux_model
from ..configs_unet import get_config, widths_of
from ..stage2 import Stage2UNet
from . import common as C
from . import latents as L
from . import stages as S


def _models_from_dir(model_dir: str):
    load = lambda name: torch.jit.load(os.path.join(model_dir, name)).eval()  # noqa: E731
    return load("unet_stage2.pt"), load("text_encoder.pt"), load("apm_image_encoder.pt")


def _models_from_ckpt(data_dir: str, ckpt: str, raw: bool = False):
    net = get_config(C.NET_CONFIG)
    state = torch.load(ckpt, map_location="cpu")["modules"]
    sd = state["model" if raw else "ema_model"]
    unet = Stage2UNet(replace(net, unet=widths_of(net.unet, sd, "base_model.")))    # any --unet-channels
    apm = APMImageEncoder(net.clip, net.resampler)
    unet.load_state_dict(sd)
    apm.load_state_dict(state["apm" if raw else "ema_apm"])
    text = build_aux_model("clip_text", C.NET_CONFIG)
    text.load_state_dict(torch.load(os.path.join(data_dir, "stage1.pt"), map_location="cpu")["text_encoder"])
    return unet.eval(), text.eval(), apm.eval()


def probe(unet, text, apm, data: L.LatentSet, timesteps, batch: int = 16, seed: int = 11) -> dict:
    rng = C.seed_all(seed)
    z0, w, ids, offs = data.windows(rng, batch)
    ac = C.ddpm_alphas_cumprod()
    res = {}
    with torch.no_grad():
        cond = torch.stack([data.render(i, o, 8) for i, o in zip(ids, offs)])
        ctx = torch.cat([text(C.token_ids(data.captions(ids))), apm(data.anchor[torch.from_numpy(ids)])], 1)
    for t in timesteps:
        errors = S.cond_swap_errors(unet, z0, w, ctx, cond, ac, t, {"first8": slice(0, 8), "last8": slice(8, 16)})
        res[str(t)] = {part: {"own": round(own, 5), "swapped": round(swapped, 5), "gain": round(swapped - own, 5)}
                       for part, (own, swapped) in errors.items()}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="training output directory holding the latent dataset")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-dir")
    src.add_argument("--ckpt")
    ap.add_argument("--timesteps", default="300,700,900")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--raw", action="store_true", help="with --ckpt: the raw weights instead of the EMA")
    args = ap.parse_args(argv)
    C.setup_torch(1)
    models = _models_from_dir(args.model_dir) if args.model_dir else _models_from_ckpt(args.data, args.ckpt, args.raw)
    res = probe(*models, L.load(args.data), [int(t) for t in args.timesteps.split(",")], args.batch)
    print(json.dumps({"source": args.model_dir or args.ckpt, "cam": res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
