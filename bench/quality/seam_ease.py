"""Seam easing, measured offline (session 20; not in the library): would spreading each stage-2 window's tone step
over its first new frames remove the cuts without harm?

    /usr/bin/python3 bench/quality/seam_ease.py SRC_TAG_DIR DST_TAG_DIR --frames L [--min-step T]
    /usr/bin/python3 bench/quality/metrics.py DIR      # DIR holding both tags: the two rows side by side

Reads generate.mjs's ``<i>.rgb`` + ``<i>.json`` from SRC_TAG_DIR and writes eased copies (tag = DST's name) to
DST_TAG_DIR. With m(.) a frame's per-channel mean colour, at every window seam s (frames 16, 24, 32, ...) the step
J = m(F_s) - m(shown frame s - 1) is taken out of the window's first L new frames, k = 0 .. L-1:

    shown_{s+k} = clamp(round(F_{s+k} - J (L - k) / L), 0, 255)     (every pixel of the frame alike)

skipping seams whose step (|J_R| + |J_G| + |J_B|) is below T grey levels. Output only: what a pipeline would feed
on to the next window (CAM) is the raw frames, so nothing but the look of the eased frames changes.
Result on the shipped model (models/train/README.md "Session 20"): both cuts of seed 33 go, but the whole-frame
offset also re-tints the object where a window's tone step is in the background alone (a yellow square on green
turns orange), so colour adherence falls (and, easing every seam, shape); not adopted."""
import argparse
import glob
import json
import os

import numpy as np


def ease(video: np.ndarray, frames: int, min_step: float = 0.0, window: int = 8, first: int = 16) -> np.ndarray:
    """``video`` [T, H, W, 3] uint8 -> the eased copy (see the module docstring)."""
    v = video.astype(np.float32)
    m = v.mean(axis=(1, 2))
    shift = np.zeros_like(m)
    for s in range(first, len(v), window):
        step = m[s] - (m[s - 1] + shift[s - 1])      # against the frame as shown
        if np.abs(step).sum() < min_step:
            continue
        for k in range(min(frames, len(v) - s)):
            shift[s + k] -= step * (frames - k) / frames
    return np.clip(np.round(v + shift[:, None, None, :]), 0, 255).astype(np.uint8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--frames", type=int, required=True, help="L: new frames the step is spread over (1-8)")
    ap.add_argument("--min-step", type=float, default=0.0, help="T: leave seams whose step is below T grey levels")
    args = ap.parse_args()
    if not 1 <= args.frames <= 8 or args.min_step < 0:
        ap.error(f"--frames must be in [1, 8] and --min-step >= 0, not {args.frames}, {args.min_step}")
    os.makedirs(args.dst, exist_ok=True)
    tag = os.path.basename(os.path.normpath(args.dst))
    for path in sorted(glob.glob(os.path.join(args.src, "*.json"))):
        meta = json.load(open(path))
        h, w = meta["sizes"]["preview"]
        video = np.fromfile(path[:-5] + ".rgb", dtype=np.uint8).reshape(-1, h, w, 3)
        name = os.path.basename(path)[:-5]
        ease(video, args.frames, args.min_step).tofile(os.path.join(args.dst, name + ".rgb"))
        json.dump({**meta, "tag": tag, "seam_ease": {"frames": args.frames, "min_step": args.min_step}},
                  open(os.path.join(args.dst, name + ".json"), "w"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
