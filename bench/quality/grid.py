"""PNG grid of frames of generated videos (raw RGB24 from generate.mjs): one row per video, ``--cols`` frames
evenly spaced from 0 to the last frame, each row labelled in the terminal output.

    /usr/bin/python3 bench/quality/grid.py /tmp/st2v-quality/full --out models/default/frames.png [--cols 8]
"""
import argparse
import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from models.world import write_png  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscale of each frame")
    args = ap.parse_args()
    rows = []
    for d in args.dirs:
        metas = sorted(glob.glob(os.path.join(d, "*.json")), key=lambda p: int(os.path.basename(p).split(".")[0]))
        for meta_path in metas[: args.limit]:                # in prompt order (0, 1, 2, ..., not 0, 1, 10)
            meta = json.load(open(meta_path))
            h, w = meta["sizes"]["preview"]
            v = np.fromfile(meta_path[:-5] + ".rgb", dtype=np.uint8).reshape(-1, h, w, 3)
            idx = np.linspace(0, len(v) - 1, args.cols).round().astype(int)
            row = np.concatenate([np.pad(v[i], ((1, 1), (1, 1), (0, 0)), constant_values=255) for i in idx], axis=1)
            rows.append(row.repeat(args.scale, 0).repeat(args.scale, 1))
            print(f"row {len(rows)}: [{meta['tag']}] {meta['prompt']} (frames {list(idx)})")
    write_png(args.out, np.concatenate(rows, axis=0))
    print(args.out)


if __name__ == "__main__":
    main()
