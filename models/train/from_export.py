"""Rebuilds a training directory from an exported model directory, so training can continue from shipped weights.

    /usr/bin/python3 -m models.train.from_export --model models/default --out /tmp/st2v-train17

The training checkpoints of the runs that made ``models/default`` live in ``/tmp`` and do not outlive the machine;
the exported TorchScript files keep every weight under the eager modules' own state-dict names. This writes the
finished-component files that ``models.train.all`` reads (``vae.pt``, ``stage1.pt``, ``stage2.pt``,
``enhancer.pt``), so that e.g. ``--only stage2_turn`` continues the shipped stage 2 and ``--collect`` followed by
``models.export`` reproduces the model directory (``models/tests/test_from_export.py`` checks that round trip).

* ``vae.pt``: the VAE encoder and decoder roles joined (the shipped decoder is the fine-tuned one, so the
  rebuilt directory has no separate ``vae_ft.pt``); the enhancer's VAE roles must be the same weights (the recipe
  shares one VAE) or this stops with an error naming the first differing tensor.
* ``stage1.pt``: ``unet_stage1`` and ``text_encoder``; ``stage2.pt``: ``unet_stage2`` and ``apm_image_encoder``;
  ``enhancer.pt``: ``enhancer_unet`` and ``enhancer_text_encoder``.
Existing files in ``--out`` are not overwritten (an error says which)."""
import argparse
import json
import os
import sys
from typing import Dict

import torch

from ..configs_aux import build_aux_model
from ..export_components import build_random
from . import common as C

#: finished-component file -> the roles (manifest component names) it holds
FILES = {
    "stage1": ("unet_stage1", "text_encoder"),
    "stage2": ("unet_stage2", "apm_image_encoder"),
    "enhancer": ("enhancer_unet", "enhancer_text_encoder"),
}


class FromExportError(RuntimeError):
    """A model directory that cannot be turned into a training directory (the message names the problem)."""


def role_weights(model_dir: str) -> Dict[str, Dict[str, torch.Tensor]]:
    """{role: state_dict} of every component in ``model_dir/manifest.json`` (tensors cloned, CPU), under the
    names of the eager module of the manifest's config; a constant buffer that TorchScript lists but the eager
    module does not save (e.g. the APM encoder's CLIP mean/std) is checked equal to the eager one and left out."""
    path = os.path.join(model_dir, "manifest.json")
    if not os.path.exists(path):
        raise FromExportError(f"{model_dir}: no manifest.json (not an exported model directory)")
    with open(path) as f:
        manifest = json.load(f)
    config = manifest.get("created_by", {}).get("config", C.NET_CONFIG)
    eager = {role: make() for role, make in build_random(config, 0).items()}
    out = {}
    for comp in manifest["components"]:
        role = comp["role"]
        mod = torch.jit.load(os.path.join(model_dir, comp["file"]), map_location="cpu")
        sd = {k: v.detach().clone() for k, v in mod.state_dict().items()}
        if role in eager:      # TorchScript also lists non-persistent buffers (APM's CLIP mean/std): constants
            keep = eager[role].state_dict()
            buffers = dict(eager[role].named_buffers())
            for k in [k for k in sd if k not in keep]:
                if k not in buffers or not torch.equal(buffers[k], sd[k]):
                    raise FromExportError(f"{comp['file']}: tensor {k} is not in the {config} {role} module")
                del sd[k]
            eager[role].load_state_dict(sd)          # strict: same names, same shapes
        out[role] = sd
    return out


def _same(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor], what: str) -> None:
    if a.keys() != b.keys():
        raise FromExportError(f"{what}: different tensor names ({sorted(a.keys() ^ b.keys())[:3]} ...)")
    for k in a:
        if not torch.equal(a[k], b[k]):
            raise FromExportError(f"{what}: tensor {k} differs; the recipe shares one VAE, so this directory "
                                  "was not made by it")


def build(model_dir: str, out: str) -> Dict[str, str]:
    """Writes the finished-component files into ``out``; returns {file name: roles it holds}."""
    weights = role_weights(model_dir)
    missing = [r for r in ("vae_encoder", "vae_decoder", *[r for rs in FILES.values() for r in rs]) if r not in weights]
    if missing:
        raise FromExportError(f"{model_dir}: components missing from the manifest: {', '.join(missing)}")
    for role in ("enhancer_vae_encoder", "enhancer_vae_decoder"):
        if role in weights:
            _same(weights[role], weights[role.replace("enhancer_", "")], f"{role} vs {role.replace('enhancer_', '')}")
    vae = {**weights["vae_encoder"], **weights["vae_decoder"]}
    build_aux_model("vae", C.NET_CONFIG).load_state_dict(vae)     # strict: every VAE tensor named exactly once
    files = {"vae": (vae, ("vae_encoder", "vae_decoder")),
             **{name: ({r: weights[r] for r in roles}, roles) for name, roles in FILES.items()}}
    os.makedirs(out, exist_ok=True)
    taken = [n for n in files if os.path.exists(os.path.join(out, f"{n}.pt"))]
    if taken:
        raise FromExportError(f"{out}: {', '.join(f'{n}.pt' for n in taken)} already there (not overwritten)")
    for name, (content, _) in files.items():
        torch.save(content, os.path.join(out, f"{name}.pt"))
    return {f"{name}.pt": " + ".join(roles) for name, (_, roles) in files.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="exported model directory (manifest.json + TorchScript files)")
    ap.add_argument("--out", required=True, help="training directory to write (models.train.all --out)")
    args = ap.parse_args(argv)
    try:
        for name, roles in build(args.model, args.out).items():
            print(f"{os.path.join(args.out, name)}: {roles}", flush=True)
    except FromExportError as e:
        print(f"from_export: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
