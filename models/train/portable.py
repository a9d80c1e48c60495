"""Trained weights in a form any torch reads: tensors as a NumPy ``.npz``, the structure around them as JSON.

A GPU machine trains with torch 2.x, and the export runs here with Debian's torch 1.13, but ``torch.load`` is not
forward compatible (a file written by a newer torch is not promised to load in an older one). So what
``scripts/gpu/train-on-device.sh`` brings back is packed: every tensor of a finished ``<component>.pt`` (nested
dicts, lists, tuples, numbers, strings, None around them) goes into one ``.npz`` array, and a JSON skeleton (stored
in the same file, as the uint8 array ``__skeleton__``) says where each one sits and its torch dtype. Unpacking
rebuilds the object with the local torch and ``torch.save``s it, bit for bit (bfloat16 travels as its raw 16 bits).

    python3 -m models.train.portable pack WORK/stage1.pt [...] --out-dir OUT        # on the GPU machine
    /usr/bin/python3 -m models.train.portable unpack OUT/stage1.npz [...] --out-dir D  # here: D/stage1.pt
"""
import argparse
import json
import os
import sys
from typing import Any, Dict, List

import numpy as np
import torch

SKELETON = "__skeleton__"
FORMAT = "streamingt2v-portable-weights/1"
# torch dtypes that travel as the NumPy dtype of the same name; bfloat16 travels as its bits (uint16)
_DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.int64: "int64",
           torch.int32: "int32", torch.int16: "int16", torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool",
           torch.bfloat16: "bfloat16"}
_BY_NAME = {v: k for k, v in _DTYPES.items()}


class PortableError(ValueError):
    """An object or file that cannot be packed or unpacked (names the file and the place inside it)."""


def _pack(obj: Any, arrays: Dict[str, np.ndarray], where: str) -> Any:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        if t.dtype not in _DTYPES:
            raise PortableError(f"{where}: a tensor of dtype {t.dtype} cannot be packed (supported: "
                                f"{', '.join(_DTYPES.values())})")
        key = f"t{len(arrays)}"
        arrays[key] = t.view(torch.int16).numpy().view(np.uint16) if t.dtype == torch.bfloat16 else t.numpy()
        return {"__tensor__": key, "dtype": _DTYPES[t.dtype], "shape": list(t.shape)}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise PortableError(f"{where}: only string keys can be packed, found {[k for k in obj if not isinstance(k, str)][:3]}")
        return {"__dict__": [[k, _pack(v, arrays, f"{where}[{k!r}]")] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_pack(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else {"__list__": items}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise PortableError(f"{where}: a {type(obj).__name__} cannot be packed (tensors, dicts with string keys, lists, "
                        "tuples, numbers, strings and None can)")


def _unpack(node: Any, arrays, where: str) -> Any:
    if isinstance(node, dict):
        if "__tensor__" in node:
            key, dtype = node["__tensor__"], node["dtype"]
            if key not in arrays or dtype not in _BY_NAME:
                raise PortableError(f"{where}: tensor {key!r} of dtype {dtype!r} is not in the file")
            a = np.array(arrays[key], copy=True, order="C")     # (ascontiguousarray makes 0-d arrays 1-d)
            t = (torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if dtype == "bfloat16"
                 else torch.from_numpy(a))
            if list(t.shape) != node["shape"]:
                raise PortableError(f"{where}: tensor {key!r} has shape {list(t.shape)}, the skeleton says {node['shape']}")
            return t
        if "__dict__" in node:
            return {k: _unpack(v, arrays, f"{where}[{k!r}]") for k, v in node["__dict__"]}
        if "__list__" in node:
            return [_unpack(v, arrays, f"{where}[{i}]") for i, v in enumerate(node["__list__"])]
        if "__tuple__" in node:
            return tuple(_unpack(v, arrays, f"{where}[{i}]") for i, v in enumerate(node["__tuple__"]))
        raise PortableError(f"{where}: unknown skeleton node {sorted(node)}")
    return node


def pack(src: str, dst: str) -> int:
    """Writes ``dst`` (.npz) from the torch file ``src``; returns the number of tensors."""
    obj = torch.load(src, map_location="cpu")
    arrays: Dict[str, np.ndarray] = {}
    skeleton = {"format": FORMAT, "torch": torch.__version__, "source": os.path.basename(src),
                "root": _pack(obj, arrays, os.path.basename(src))}
    arrays[SKELETON] = np.frombuffer(json.dumps(skeleton).encode("utf-8"), dtype=np.uint8)
    tmp = dst + ".tmp.npz"                  # np.savez appends .npz to names without it
    np.savez(tmp, **arrays)
    os.replace(tmp, dst)
    return len(arrays) - 1


def load(src: str) -> Any:
    """The object packed in ``src``, rebuilt with this torch."""
    try:
        with np.load(src, allow_pickle=False) as z:
            if SKELETON not in z.files:
                raise PortableError(f"{src}: no {SKELETON} entry: not a file written by models.train.portable pack")
            skeleton = json.loads(z[SKELETON].tobytes().decode("utf-8"))
            if skeleton.get("format") != FORMAT:
                raise PortableError(f"{src}: format {skeleton.get('format')!r}, expected {FORMAT!r}")
            return _unpack(skeleton["root"], {k: z[k] for k in z.files if k != SKELETON}, os.path.basename(src))
    except (OSError, ValueError) as e:
        if isinstance(e, PortableError):
            raise
        raise PortableError(f"{src}: cannot be read as a packed weights file ({e})") from None


def unpack(src: str, dst: str) -> None:
    """Writes ``dst`` (torch.save with this torch) from the packed ``src``."""
    obj = load(src)
    tmp = dst + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, dst)


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=["pack", "unpack"])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    try:
        for f in args.files:
            stem = os.path.basename(f).rsplit(".", 1)[0]
            if args.action == "pack":
                dst = os.path.join(args.out_dir, stem + ".npz")
                n = pack(f, dst)
                print(f"packed {f} -> {dst} ({n} tensors)")
            else:
                dst = os.path.join(args.out_dir, stem + ".pt")
                unpack(f, dst)
                print(f"unpacked {f} -> {dst}")
    except PortableError as e:
        print(f"portable: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"portable: {e.filename}: no such file", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
