"""Ablated copies of a model directory for the quality benchmark (issue 6).

    /usr/bin/python3 bench/quality/ablate.py --model models/default --out /tmp/st2v-ablations

writes ``<out>/nocam`` (every CAM merger's zero-initialised output projection set back to zero: the conditioning
frames no longer reach the UNet) and ``<out>/noapm`` (every APM mixing gate ``alpha`` = 0, SiLU(0) = 0: the anchor
tokens no longer reach cross-attention). Only ``unet_stage2.pt`` changes; manifest hashes are rewritten.
"""
import argparse
import hashlib
import json
import os
import shutil

import torch


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ablate(model: str, out: str, kind: str) -> str:
    dst = os.path.join(out, kind)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(model, dst)
    path = os.path.join(dst, "unet_stage2.pt")
    m = torch.jit.load(path)
    n = 0
    with torch.no_grad():
        for name, p in m.named_parameters():
            if kind == "nocam" and "cross_attention_merger" in name and ".proj_out." in name:
                p.zero_()
                n += 1
            elif kind == "noapm" and name.endswith("attn2.alpha"):
                p.zero_()
                n += 1
    torch.jit.save(m, path)
    with open(os.path.join(dst, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    manifest["files"]["unet_stage2.pt"] = {"sha256": _sha256(path), "bytes": os.path.getsize(path)}
    manifest["name"] = f"{manifest.get('name', 'model')}-{kind}"
    with open(os.path.join(dst, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"{dst}: {n} tensors zeroed")
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--out", default="/tmp/st2v-ablations")
    ap.add_argument("--kinds", default="nocam,noapm")
    args = ap.parse_args()
    for kind in args.kinds.split(","):
        ablate(args.model, args.out, kind)


if __name__ == "__main__":
    main()
