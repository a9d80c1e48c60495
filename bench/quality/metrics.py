"""Quality benchmark, step 2 (issue 6): metrics of generated long videos against their world prompts.

    /usr/bin/python3 bench/quality/metrics.py /tmp/st2v-quality [--reference 8] [--json out.json]

Reads every ``<dir>/<tag>/<i>.rgb`` + ``<i>.json`` written by generate.mjs (RGB24 frames) and prints one row per
tag (means over prompts). ``--reference N`` adds a ``world`` row: the same metrics on true renders of the first N
prompts of prompts.txt (checks the detectors; ideal values). Only numpy is needed.

Metrics (all on the stage-2 preview frames unless the tag has final frames, then on those too):

* ``cuts``: scene cuts per video, AdaptiveDetector-style on HSV frame differences: content value = mean of the
  mean |dH|, |dS|, |dV| (OpenCV HSV, uint8 ranges) of consecutive frames; a cut is reported when the value is at
  least 3.0x the mean of the 2 frames before and after it, at least 15, and 15+ frames after the previous cut.
* ``seam_ratio``: median frame difference across stage-2 window seams (frame 15 -> 16, 23 -> 24, ...) over the
  median difference inside windows; 1 for a continuous video (true renders), > 1 when windows restart the scene.
* ``seam_tone``: the same ratio for the change of the whole frame's mean colour (sum over R, G, B of the absolute
  change; medians below 0.5 grey level count as 0.5): > 1 when each window restarts the global brightness or tint
  (a flicker at the seams), 1 for true renders. ``handover_tone``: the same for the frame 15 -> 16 seam alone
  (stage 1 -> stage 2).
* ``seam_cuts``: the cuts that fall on a stage-2 window's first new frame (16, 24, 32, ...); ``cut_tone``: the
  median whole-frame mean-colour change (|R| + |G| + |B|, grey levels) into the cut frames (NaN without a cut):
  together they say whether the cuts are the windows' tone jumps.
* ``motion``: mean absolute grey-level difference between consecutive frames (0-255); ``frozen``: fraction of
  frame pairs with difference < 0.5 (stagnation).
* ``obj_speed``: median per-frame displacement (px at 64x64) of the main-object centroid (pixels of the prompt's
  colour, nearest-palette labelling, wrap-aware circular mean).
* ``colour_drift``: RGB distance (0-255) between the mean object colour of frames 0-7 and of the last 8 frames;
  ``size_ratio``: object area last 8 / first 8 frames; ``present_end``: object found in the last 8 frames.
* ``dir_turns``: how many times the direction of the object (as ``dir_ok`` detects it) changes between consecutive
  16-frame stretches from frame 16 on (the stage-2 frames; 13 pairs in 240 frames); 0 for a video that keeps
  one direction (true renders), high when the motion wanders.
* ``colour_turns`` (session 15): how many times the object's colour (the most frequent object-palette label of a
  16-frame stretch, background labels excluded, as ``colour_ok`` reads it for the whole video) changes between
  consecutive stretches from frame 0 (stage 1's frames included; 14 pairs in 240 frames). ``colour_drift`` is
  measured on the pixels of the prompt's colour, so an object that turns into another palette colour (the
  yellow-on-gray prompts turning red) shows here, not there.
* ``retries`` (session 21): the cut guard's retries per video (``stage2.cutRetries``; read from the ``retries`` list
  generate.mjs writes to each video's json, 0 when absent; NaN for true renders).
* adherence: ``colour_ok`` (most frequent object-palette label, background labels excluded, equals the prompt
  colour), ``shape_ok`` (angular harmonics of the object outline: weak -> circle, else k=3/4/5 ->
  triangle/square/star, majority over sampled frames), ``dir_ok`` (sign of the dominant axis of the mean object
  velocity equals the prompt direction).
"""
import argparse
import glob
import json
import math
import os
import sys
import warnings
from collections import Counter
from typing import Dict, List, Optional, Tuple

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)
from models import world  # noqa: E402

NATURAL_TONES = {"grass": [(0.18, 0.52, 0.16), (0.35, 0.70, 0.22), (0.27, 0.61, 0.19)],
                 "sea": [(0.05, 0.25, 0.55), (0.25, 0.55, 0.85), (0.15, 0.40, 0.70)],
                 "sand": [(0.80, 0.68, 0.42), (0.93, 0.84, 0.60), (0.86, 0.76, 0.51)]}


# ------------------------------------------------------------------------------------------ scene cuts
def hsv_u8(frames: np.ndarray) -> np.ndarray:
    """[T,H,W,3] uint8 RGB -> float HSV in OpenCV uint8 ranges (H 0-179, S 0-255, V 0-255)."""
    x = frames.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(-1)
    mn = x.min(-1)
    d = v - mn
    s = np.where(v > 0, d / np.maximum(v, 1e-8), 0)
    dd = np.maximum(d, 1e-8)
    h = np.where(v == r, 60 * (g - b) / dd, np.where(v == g, 120 + 60 * (b - r) / dd, 240 + 60 * (r - g) / dd))
    h = np.where(d == 0, 0, h) % 360
    return np.stack([h / 2, s * 255, v * 255], -1)


def content_values(frames: np.ndarray) -> np.ndarray:
    hsv = hsv_u8(frames)
    diff = np.abs(np.diff(hsv, axis=0)).mean(axis=(1, 2))       # [T-1, 3]
    return diff.mean(-1)


def adaptive_cuts(values: np.ndarray, threshold: float = 3.0, min_content: float = 15.0, window: int = 2,
                  min_len: int = 15) -> List[int]:
    cuts, last = [], 0
    for i in range(window, len(values) - window):
        nb = np.concatenate([values[i - window:i], values[i + 1:i + 1 + window]])
        avg = nb.mean()
        ratio = values[i] / avg if avg > 1e-6 else (255.0 if values[i] >= min_content else 0.0)
        frame = i + 1                                            # values[i] compares frames i and i+1
        if ratio >= threshold and values[i] >= min_content and frame - last >= min_len:
            cuts.append(frame)
            last = frame
    return cuts


# ------------------------------------------------------------------------------------------ object
def palette(prompt: str) -> Dict[str, np.ndarray]:
    a = world.parse_caption(prompt)
    pal = {c: np.array(world.RGB[c]) for c in world.OBJECT_COLOURS}
    bg = a.get("background", "plain")
    if bg in NATURAL_TONES:
        for j, c in enumerate(NATURAL_TONES[bg]):
            pal[f"bg{j}"] = np.array(c)
    elif "bg_colour" in a:
        c = np.array(world.RGB[a["bg_colour"]])
        pal[f"bg:{a['bg_colour']}"] = c
        pal["bg:dark"] = c * 0.55 + 0.05
        pal["bg:mid"] = c * 0.775 + 0.025
    return pal


def labels(frames: np.ndarray, pal: Dict[str, np.ndarray]):
    names = list(pal)
    cols = np.stack([pal[n] for n in names])                    # [K,3]
    x = frames.astype(np.float32) / 255.0
    d = ((x[..., None, :] - cols[None, None, None]) ** 2).sum(-1)  # [T,H,W,K]
    return np.argmin(d, -1), names


def largest_component(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    best: List = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        comp, stack = [], [(y0, x0)]
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            comp.append((y, x))
            for yy, xx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    stack.append((yy, xx))
        if len(comp) > len(best):
            best = comp
    out = np.zeros_like(mask, dtype=bool)
    if best:
        ys, xs = zip(*best)
        out[list(ys), list(xs)] = True
    return out


def object_component(mask: np.ndarray) -> Optional[np.ndarray]:
    """The largest connected part of an object mask, rolled to the frame centre first (the world wraps); None if
    it has fewer than 12 pixels or touches the border (not judged)."""
    h, w = mask.shape
    if mask.sum() < 12:
        return None
    ys, xs = np.nonzero(mask)
    mask = np.roll(mask, (int(h / 2 - circular_mean(ys + 0.5, h)), int(w / 2 - circular_mean(xs + 0.5, w))), (0, 1))
    m = largest_component(mask)
    if m.sum() < 12 or m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any():
        return None
    return m


def bbox_fill(m: np.ndarray) -> float:
    """Share of its bounding box that a (non-empty) mask fills: upright square 1, circle pi/4 = 0.79, triangle 0.5."""
    ys, xs = np.nonzero(m)
    return m.sum() / float((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))


def shape_of(mask: np.ndarray) -> Optional[str]:
    """Classify one object mask (None if too small or touching the border).

    A star is recognised by its 5-fold angular harmonic; otherwise by how much of its bounding box the shape
    fills (upright square 1.0, circle pi/4 = 0.79, triangle 0.5 - the world draws non-spinning shapes upright):
    fill >= 0.9 square, >= 0.65 circle, else triangle. A rotated square (spinning) is told apart from a circle
    by its 4-fold harmonic."""
    m = object_component(mask)
    if m is None:
        return None
    ys, xs = np.nonzero(m)
    cy, cx = ys.mean(), xs.mean()
    ang = np.arctan2(ys - cy, xs - cx)
    rad = np.hypot(ys - cy, xs - cx)
    bins = 36
    idx = ((ang + math.pi) / (2 * math.pi) * bins).astype(int) % bins
    prof = np.zeros(bins)
    np.maximum.at(prof, idx, rad + 0.5)
    if (prof == 0).any():
        return None
    f = np.abs(np.fft.rfft(prof)) / (prof.mean() * bins)
    if f[5] > 0.06 and f[5] > max(f[3], f[4]):
        return "star"
    fill = bbox_fill(m)
    if fill >= 0.9:
        return "square"
    if fill >= 0.65:
        return "square" if f[4] > 0.06 and f[4] > f[3] else "circle"
    return "triangle"


def circular_mean(coords: np.ndarray, size: int) -> float:
    a = coords * 2 * math.pi / size
    return (math.atan2(np.sin(a).mean(), np.cos(a).mean()) * size / (2 * math.pi)) % size


def reference_scene(i: int, prompt: str) -> world.Scene:
    """The world scene of benchmark prompt ``i`` whose true render is the ``world`` row (``--reference``)."""
    return world.scene_from_caption(prompt, np.random.default_rng(i), "core" if world.in_core(prompt) else "full")


def reference_video(i: int, prompt: str, frames: int, size: int = 64) -> np.ndarray:
    """uint8 [frames, size, size, 3]: the true render of benchmark prompt ``i`` (``reference_scene``), from frame 0."""
    v = world.render(reference_scene(i, prompt), 0, frames, size).transpose(0, 2, 3, 1)
    return ((v + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def load_prompts(limit: Optional[int] = None) -> List[str]:
    """The benchmark prompts of prompts.txt (comment lines skipped), the first ``limit`` of them."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompts.txt")) as f:
        prompts = [p.strip() for p in f if p.strip() and not p.startswith("#")]
    return prompts[:limit]


def centroids(masks: np.ndarray, present: np.ndarray) -> List[Optional[Tuple[float, float]]]:
    """Wrap-aware (x, y) centroid of each frame's object mask [T, H, W], None where ``present`` is False."""
    h, w = masks.shape[1:]
    out: List[Optional[Tuple[float, float]]] = []
    for mask, there in zip(masks, present):
        if there:
            ys, xs = np.nonzero(mask)
            out.append((circular_mean(xs + 0.5, w), circular_mean(ys + 0.5, h)))
        else:
            out.append(None)
    return out


def _direction(v: np.ndarray) -> str:
    """The direction word of a mean velocity (px/frame): the dominant axis' sign, "none" below 0.05 px/frame."""
    if np.abs(v).max() < 0.05:
        return "none"
    if abs(v[0]) >= abs(v[1]):
        return "right" if v[0] > 0 else "left"
    return "down" if v[1] > 0 else "up"


def analyse(frames: np.ndarray, prompt: str) -> Dict[str, float]:
    t, h, w, _ = frames.shape
    a = world.parse_caption(prompt)
    vals = content_values(frames)
    cuts = adaptive_cuts(vals)
    rgb = frames.astype(np.float32)
    grey = rgb.mean(-1)
    fd = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))
    pal = palette(prompt)
    lab, names = labels(frames, pal)
    obj = names.index(a["colour"]) if a.get("colour") in names else -1
    masks = lab == obj
    area = masks.reshape(t, -1).mean(-1)
    present = area > 0.003
    # centroid track
    cents = centroids(masks, present)
    steps, step_at = [], []
    for i in range(1, t):
        if cents[i] is not None and cents[i - 1] is not None:
            dx = (cents[i][0] - cents[i - 1][0] + w / 2) % w - w / 2
            dy = (cents[i][1] - cents[i - 1][1] + h / 2) % h - h / 2
            steps.append((dx * 64 / w, dy * 64 / h))
            step_at.append(i)
    st = np.array(steps) if steps else np.zeros((0, 2))
    v = st.mean(0) if len(st) else np.zeros(2)
    # direction turns: how often the direction of consecutive 16-frame stretches from frame 16 on (the stage-2
    # frames) changes; 0 for a video that keeps one direction
    at = np.array(step_at)
    stretch = [_direction(st[(at >= a) & (at < a + 16)].mean(0)) if ((at >= a) & (at < a + 16)).any() else "none"
               for a in range(16, t - 8, 16)]
    dir_turns = sum(a != b for a, b in zip(stretch, stretch[1:]))
    # stagnation per window: mean grey-level change of each 8-frame window (the stage-2 step), and the windows
    # whose object track moves less than 0.1 px/frame
    win = [fd[i:i + 8].mean() for i in range(0, len(fd), 8) if len(fd[i:i + 8])]
    track = np.array([c if c is not None else (np.nan, np.nan) for c in cents], dtype=np.float64)
    still = 0
    for i in range(0, t - 1, 8):
        seg = track[i:i + 9]
        ok = ~np.isnan(seg[:, 0])
        if ok.sum() >= 2:
            d = np.diff(seg[ok], axis=0)
            d = (d + np.array([w / 2, h / 2])) % np.array([w, h]) - np.array([w / 2, h / 2])
            still += int(np.hypot(d[:, 0], d[:, 1]).mean() * 64 / w < 0.1)
        else:
            still += 1
    direction = _direction(v)
    # colour adherence: most frequent object colour label, background labels excluded
    per_frame = np.stack([np.bincount(f.ravel(), minlength=len(names)) for f in lab])     # [T, K] label counts
    is_obj = np.array([n in world.OBJECT_COLOURS and n != a.get("bg_colour") for n in names])

    def object_colour(counts: np.ndarray) -> str:
        c = np.where(is_obj, counts, 0)
        return names[int(c.argmax())] if c.any() else "none"
    detected_colour = object_colour(per_frame.sum(0))
    colours = [object_colour(per_frame[i:i + 16].sum(0)) for i in range(0, t - 8, 16)]
    colour_turns = sum(x != y for x, y in zip(colours, colours[1:]))
    # shape adherence
    shapes = [s for s in (shape_of(masks[i]) for i in range(0, t, max(1, t // 30))) if s]
    detected_shape = Counter(shapes).most_common(1)[0][0] if shapes else "none"

    def mean_colour(sl):
        px = frames[sl][masks[sl]]
        return px.astype(np.float32).mean(0) if len(px) else None
    c0, c1 = mean_colour(slice(0, 8)), mean_colour(slice(t - 8, t))
    # window seams: frames 16, 24, 32, ... start a new stage-2 window; fd[i] is the change from frame i to i+1
    seams = np.arange(15, len(fd), 8)
    inside = np.delete(fd, seams)
    seam_ratio = float(np.median(fd[seams]) / max(np.median(inside), 1e-3)) if len(seams) and len(inside) else float("nan")
    # the same for the whole-frame mean colour (sum over R, G, B of |change of the frame's mean|; medians under 0.5
    # grey level count as 0.5, noise): > 1 when the windows restart the global tone, not only the content;
    # handover_tone: the stage-1 -> stage-2 seam alone
    tone = np.abs(np.diff(rgb.mean(axis=(1, 2)), axis=0)).sum(-1)
    seam_tone = handover_tone = float("nan")
    if len(seams) and len(inside):
        tone_inside = max(float(np.median(np.delete(tone, seams))), 0.5)
        seam_tone = max(float(np.median(tone[seams])), 0.5) / tone_inside
        handover_tone = max(float(tone[15]), 0.5) / tone_inside
    cut_tone = float(np.median([tone[c - 1] for c in cuts])) if cuts else float("nan")
    a0, a1 = area[:8].mean(), area[-8:].mean()
    return {
        "frames": t, "cuts": len(cuts), "dir_turns": dir_turns, "colour_turns": colour_turns, "cut_frames": cuts,
        "motion": float(fd.mean()),
        "frozen": float((fd < 0.5).mean()), "min_window_motion": float(min(win)) if win else 0.0,
        "still_windows": still, "jump_ratio": float(fd.max() / max(np.median(fd), 1e-3)), "seam_ratio": seam_ratio,
        "seam_tone": seam_tone, "handover_tone": handover_tone, "cut_tone": cut_tone,
        "seam_cuts": sum(c - 1 in seams for c in cuts),
        "obj_speed": float(np.median(np.hypot(st[:, 0], st[:, 1]))) if len(st) else 0.0,
        "colour_drift": float(np.linalg.norm(c1 - c0)) if c0 is not None and c1 is not None else float("nan"),
        "size_ratio": float(a1 / a0) if a0 > 0 else float("nan"), "present_end": float(present[-8:].mean()),
        "colour_ok": float(detected_colour == a.get("colour")), "shape_ok": float(detected_shape == a.get("shape")),
        "dir_ok": float(direction == a.get("direction")), "detected": [detected_colour, detected_shape, direction],
    }


def video_u8(video) -> np.ndarray:
    """A torch video [B, 3, F, H, W] in [-1, 1] (what the probes decode) -> uint8 frames [B, F, H, W, 3], rounded
    as the pipeline's video output rounds them."""
    return ((video.clamp(-1, 1).permute(0, 2, 3, 4, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def read_video(path: str, height: int, width: int) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.uint8)
    return raw.reshape(-1, height, width, 3)


ADHERENCE = ["colour_ok", "shape_ok", "dir_ok"]
KEYS = ["cuts", "seam_cuts", "cut_tone", "motion", "frozen", "min_window_motion", "still_windows", "jump_ratio", "seam_ratio", "seam_tone",
        "handover_tone", "obj_speed", "colour_drift", "size_ratio", "present_end", "dir_turns", "colour_turns",
        "colour_ok", "shape_ok", "dir_ok", "retries"]


def summarize(rows: List[Dict]) -> Dict[str, float]:
    """Means over videos; ``adherence`` = fraction of (video, attribute) pairs right over colour, shape, direction;
    ``all_ok`` = fraction of videos with all three right."""
    with warnings.catch_warnings():     # a column no row has (``retries`` of true renders) is NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        out = {k: float(np.nanmean([r.get(k, np.nan) for r in rows])) for k in KEYS} | {"n": len(rows)}
    out["adherence"] = float(np.mean([r[k] for r in rows for k in ADHERENCE]))
    out["all_ok"] = float(np.mean([all(r[k] for k in ADHERENCE) for r in rows]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--reference", type=int, default=0, help="add true world renders of the first N prompts")
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    results: Dict[str, List[Dict]] = {}
    for meta_path in sorted(glob.glob(os.path.join(args.dir, "*", "*.json"))):
        meta = json.load(open(meta_path))
        for stage, suffix in (("preview", ".rgb"), ("final", ".final.rgb")):
            path = meta_path[:-5] + suffix
            if not os.path.exists(path):
                continue
            h, w = meta["sizes"][stage]
            r = analyse(read_video(path, h, w), meta["prompt"])
            r["prompt"], r["seconds"] = meta["prompt"], meta["seconds"]
            r["retries"] = len(meta.get("retries", []))      # the cut guard's (generate.mjs; 0 before session 21)
            tag = meta["tag"] + ("" if stage == "preview" else "/final")
            results.setdefault(tag, []).append(r)
    if args.reference:
        prompts = load_prompts(args.reference)
        for i, p in enumerate(prompts):
            r = analyse(reference_video(i, p, args.frames), p)
            r["prompt"] = p
            results.setdefault("world (true renders)", []).append(r)
    cols = KEYS + ["adherence", "all_ok"]
    print("| run | n | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    summary = {}
    for tag, rows in results.items():
        s = summarize(rows)
        summary[tag] = s
        print(f"| {tag} | {s['n']} | " + " | ".join(f"{s[k]:.3g}" for k in cols) + " |")
    for tag, rows in results.items():
        for r in rows:
            print(f"  {tag}: {r['prompt']!r} detected={r['detected']} cuts={r['cut_frames']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "videos": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
