"""Synthetic video world for the embedded default model (issue 6).

One coloured shape moves over a textured or gradient background, sometimes with a camera pan. Every scene is
an analytic function of time, so any frame ``t`` of an arbitrarily long clip can be rendered directly (windows
can be cut anywhere, anchors can be frame 0 of a clip hundreds of frames long) at any resolution (64x64 for
stages 1-2, 128x128 for the stage-3 targets; both are the same scene).

Caption grammar (every word is in ``models.tokenizer.DEFAULT_TINY_WORDS``, so the tiny tokenizer the exporter
writes is exactly the one the text encoder was trained with)::

    a|an <colour> <shape> <motion> [slowly|quickly] <to the left|to the right|up|down> on <background>
    <motion>     := moving | bouncing | spinning
    <background> := a plain <c> background | a <c> checkered background | a <c> gradient background
                  | the grass | the sea | the sand

Motion semantics (screen coordinates, 64 units = frame width): ``moving`` = straight line with wrap-around
(the object leaves on one side and re-enters on the other, so the direction holds for hundreds of frames);
``bouncing`` = the same plus a periodic hop perpendicular to the direction; ``spinning`` = rotating while
drifting. Without an adverb the speed changes smoothly over time (+-40 % around 1 unit/frame); ``slowly`` is a
constant 0.5, ``quickly`` a constant 2 units/frame.

Usage::

    from models.world import sample_scene, render, caption
    rng = np.random.default_rng(0)
    s = sample_scene(rng)
    caption(s)                         # 'a red circle bouncing to the right on a blue checkered background'
    render(s, t0=100, n=16, size=64)   # float32 [16, 3, 64, 64] in [-1, 1]
"""
import math
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

import numpy as np

from .tokenizer import DEFAULT_TINY_WORDS

RGB: Dict[str, Tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12), "green": (0.15, 0.72, 0.22), "blue": (0.15, 0.30, 0.90),
    "yellow": (0.95, 0.86, 0.15), "purple": (0.58, 0.22, 0.80), "white": (0.96, 0.96, 0.96),
    "orange": (0.98, 0.52, 0.10), "pink": (0.98, 0.52, 0.75), "gray": (0.50, 0.50, 0.52),
    "black": (0.06, 0.06, 0.08), "cyan": (0.15, 0.80, 0.85),
}
OBJECT_COLOURS = ("red", "green", "blue", "yellow", "purple", "white", "orange", "pink")
BACKGROUND_COLOURS = ("blue", "green", "gray", "black", "pink", "cyan", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "star")
MOTIONS = ("moving", "bouncing", "spinning")
DIRECTIONS = ("left", "right", "up", "down")
SPEEDS = ("", "slowly", "quickly")
PATTERNS = ("plain", "checkered", "gradient")
NATURAL = ("grass", "sea", "sand")
DIRECTION_VECTORS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
SPEED_VALUES = {"": 1.0, "slowly": 0.5, "quickly": 2.0}
UNITS = 64.0  # world units per frame side

#: Every word a caption can contain.
WORDS: Tuple[str, ...] = tuple(sorted(set(
    ("a", "an", "to", "the", "on", "background") + OBJECT_COLOURS + BACKGROUND_COLOURS + SHAPES + MOTIONS + DIRECTIONS
    + tuple(s for s in SPEEDS if s) + PATTERNS + NATURAL)))
assert set(WORDS) <= set(DEFAULT_TINY_WORDS), sorted(set(WORDS) - set(DEFAULT_TINY_WORDS))


@dataclass(frozen=True)
class Scene:
    """All parameters of one clip (an analytic function of the frame index)."""

    colour: str
    shape: str
    motion: str
    direction: str
    speed: str                 # '', 'slowly', 'quickly'
    background: str            # 'plain' | 'checkered' | 'gradient' | 'grass' | 'sea' | 'sand'
    bg_colour: str             # unused for grass/sea/sand
    size: float                # radius in world units
    x0: float
    y0: float
    angle0: float
    spin: float                # rad/frame (spinning only)
    speed_wobble: Tuple[float, float]  # (angular frequency, phase) of the speed change (no adverb)
    pan: Tuple[float, float]   # camera pan, world units/frame (background moves by -pan)
    texture: Tuple[float, ...] # phases/frequencies of the background texture

    @property
    def bg_words(self) -> str:
        if self.background in NATURAL:
            return f"the {self.background}"
        if self.background == "plain":
            return f"a plain {self.bg_colour} background"
        return f"a {self.bg_colour} {self.background} background"


def caption(s: Scene) -> str:
    speed = f" {s.speed}" if s.speed else ""
    article = "an" if s.colour[0] in "aeiou" else "a"
    where = f"to the {s.direction}" if s.direction in ("left", "right") else s.direction
    return f"{article} {s.colour} {s.shape} {s.motion}{speed} {where} on {s.bg_words}"


#: The "core" world the embedded default model is trained on: the same grammar, fewer and easier choices
#: (upright shapes that are readable at 64x64 / an 8x8 latent, straight motion, plain or gradient backgrounds,
#: no camera pan) so that a CPU-hour of training reaches it. Prompts outside it still parse and render.
CORE = {
    "colours": ("red", "green", "blue", "yellow", "white", "purple"),
    "bg_colours": ("black", "gray", "blue", "green", "pink", "cyan"),
    "shapes": ("circle", "square", "triangle"),
    "motions": ("moving",),
    "patterns": ("plain", "plain", "gradient"),
    "size": (12.0, 15.0),
}
WORLDS = ("full", "core")

#: Every word a caption of the core world can contain (what a model trained on it has seen; the manifest's
#: ``prompt_words`` of the embedded default model, so the library can say which words of a prompt it never saw).
CORE_WORDS: Tuple[str, ...] = tuple(sorted(set(
    ("a", "to", "the", "on", "background", "moving") + CORE["colours"] + CORE["bg_colours"] + CORE["shapes"]
    + DIRECTIONS + tuple(s for s in SPEEDS if s) + CORE["patterns"])))


def sample_scene(rng: np.random.Generator, kind: str = "full") -> Scene:
    """A random scene of world ``kind`` ('full' or 'core', see ``CORE``); all randomness comes from ``rng``."""
    if kind == "core":
        return _sample_core(rng)
    if kind != "full":
        raise ValueError(f"unknown world {kind!r}; expected one of {WORLDS}")
    colour = OBJECT_COLOURS[rng.integers(len(OBJECT_COLOURS))]
    background = (PATTERNS + NATURAL)[rng.integers(len(PATTERNS) + len(NATURAL))]
    bg_choices = [c for c in BACKGROUND_COLOURS if c != colour]
    bg_colour = bg_choices[rng.integers(len(bg_choices))]
    # keep the object visible on the natural backgrounds too
    if (background, colour) in {("grass", "green"), ("sea", "blue"), ("sand", "yellow"), ("sand", "orange")}:
        background = "plain"
    pan = (0.0, 0.0)
    if rng.random() < 0.3:
        pan = (float(rng.uniform(-0.35, 0.35)), float(rng.uniform(-0.35, 0.35)))
    return Scene(
        colour=colour, shape=SHAPES[rng.integers(len(SHAPES))], motion=MOTIONS[rng.integers(len(MOTIONS))],
        direction=DIRECTIONS[rng.integers(len(DIRECTIONS))], speed=SPEEDS[rng.integers(len(SPEEDS))],
        background=background, bg_colour=bg_colour, size=float(rng.uniform(8.0, 12.0)),
        x0=float(rng.uniform(0, UNITS)), y0=float(rng.uniform(0, UNITS)), angle0=float(rng.uniform(0, 2 * math.pi)),
        spin=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.08, 0.16)),
        speed_wobble=(float(rng.uniform(0.03, 0.08)), float(rng.uniform(0, 2 * math.pi))), pan=pan,
        texture=tuple(float(v) for v in rng.uniform(0, 2 * math.pi, size=6)))


def _sample_core(rng: np.random.Generator) -> Scene:
    colour = CORE["colours"][rng.integers(len(CORE["colours"]))]
    bgs = [c for c in CORE["bg_colours"] if c != colour]
    return Scene(
        colour=colour, shape=CORE["shapes"][rng.integers(len(CORE["shapes"]))], motion="moving",
        direction=DIRECTIONS[rng.integers(len(DIRECTIONS))], speed=SPEEDS[rng.integers(len(SPEEDS))],
        background=CORE["patterns"][rng.integers(len(CORE["patterns"]))], bg_colour=bgs[rng.integers(len(bgs))],
        size=float(rng.uniform(*CORE["size"])), x0=float(rng.uniform(0, UNITS)), y0=float(rng.uniform(0, UNITS)),
        angle0=0.0, spin=0.0, speed_wobble=(float(rng.uniform(0.03, 0.08)), float(rng.uniform(0, 2 * math.pi))),
        pan=(0.0, 0.0), texture=tuple(float(v) for v in rng.uniform(0, 2 * math.pi, size=6)))


def in_core(text: str) -> bool:
    """Whether a prompt only uses choices of the core world (what the embedded default model was trained on)."""
    a = parse_caption(text)
    return (a.get("colour") in CORE["colours"] and a.get("shape") in CORE["shapes"]
            and a.get("motion", "moving") in CORE["motions"] and a.get("background", "plain") in CORE["patterns"]
            and a.get("bg_colour", "black") in CORE["bg_colours"] and "direction" in a)


def parse_caption(text: str) -> Dict[str, str]:
    """Attributes named in a prompt of the grammar (missing ones are absent): colour, shape, motion, direction,
    speed, background, bg_colour."""
    words = text.lower().replace(",", " ").split()
    out: Dict[str, str] = {}
    for i, w in enumerate(words):
        if w in SHAPES and "shape" not in out:
            out["shape"] = w
            if i > 0 and words[i - 1] in RGB:
                out["colour"] = words[i - 1]
        elif w in MOTIONS:
            out["motion"] = w
        elif w in DIRECTIONS:
            out["direction"] = w
        elif w in ("slowly", "quickly"):
            out["speed"] = w
        elif w in NATURAL:
            out["background"] = w
        elif w in PATTERNS:
            out["background"] = w
        elif w == "background" and "background" not in out:
            out["background"] = "plain"
    if "on" in words:
        tail = words[words.index("on"):]
        for w in tail:
            if w in RGB:
                out["bg_colour"] = w
                break
    return out


def scene_from_caption(text: str, rng: np.random.Generator, kind: str = "full") -> Scene:
    """A random scene of world ``kind`` made consistent with ``text`` (for references in benchmarks)."""
    s = sample_scene(rng, kind)
    a = parse_caption(text)
    kw = {k: a[k] for k in ("colour", "shape", "motion", "direction", "bg_colour") if k in a}
    kw["speed"] = a.get("speed", "")
    if "background" in a:
        kw["background"] = a["background"]
    return replace(s, **kw)


def _offset(s: Scene, t: np.ndarray) -> np.ndarray:
    """Distance travelled along the direction after ``t`` frames."""
    v = SPEED_VALUES[s.speed]
    if s.speed:
        return v * t
    w, ph = s.speed_wobble
    amp = 0.4
    return v * (t - amp / w * (np.cos(w * t + ph) - math.cos(ph)))


def object_state(s: Scene, t: float) -> Tuple[float, float, float]:
    """(x, y, angle) of the object centre in world units at frame ``t`` (x, y wrap modulo 64)."""
    dx, dy = DIRECTION_VECTORS[s.direction]
    d = float(_offset(s, np.asarray(t, dtype=np.float64)))
    x, y = s.x0 + dx * d, s.y0 + dy * d
    if s.motion == "bouncing":
        hop = 14.0 * abs(math.sin(math.pi * t / 12.0))
        if dx != 0.0:
            y -= hop
        else:
            x += hop
    angle = s.angle0 + (s.spin * t if s.motion == "spinning" else 0.0)
    return x % UNITS, y % UNITS, angle


def _shape_distance(shape: str, qx: np.ndarray, qy: np.ndarray, r: float) -> np.ndarray:
    """Approximate signed distance (world units) of points q (object frame, unrotated) to the shape."""
    if shape == "circle":
        return np.sqrt(qx * qx + qy * qy) - r
    if shape == "square":
        return np.maximum(np.abs(qx), np.abs(qy)) - 0.82 * r
    if shape == "triangle":
        d = -np.inf
        for k in range(3):
            a = -math.pi / 2 + k * 2 * math.pi / 3
            d = np.maximum(d, qx * math.cos(a) + qy * math.sin(a))
        return d - 0.55 * r
    if shape == "star":
        rho = np.sqrt(qx * qx + qy * qy)
        phi = np.arctan2(qy, qx)
        return rho - r * (0.78 + 0.28 * np.cos(5 * phi))
    raise ValueError(shape)


def _background(s: Scene, t: float, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """[3, H, W] in [0, 1]; (gx, gy) are world coordinates of the pixel centres."""
    px, py = s.pan
    x, y = gx + px * t, gy + py * t       # camera moved by pan*t: the world seen is shifted
    p = s.texture
    if s.background in ("plain", "checkered", "gradient"):
        c = np.asarray(RGB[s.bg_colour])[:, None, None]
        dark = c * 0.55 + 0.05
        if s.background == "plain":
            return np.broadcast_to(c, (3,) + gx.shape).copy()
        if s.background == "checkered":
            m = ((np.floor(x / 32.0) + np.floor(y / 32.0)) % 2)[None]
            return c * m + dark * (1 - m)
        m = (0.5 + 0.5 * np.cos(2 * math.pi * y / 128.0 + p[0]))[None]
        return c * m + dark * (1 - m)
    if s.background == "grass":
        n = 0.5 + 0.3 * np.sin(x * 0.2 + 1.5 * np.sin(y * 0.1 + p[0])) + 0.2 * np.sin(y * 0.15 + p[1])
        base, alt = np.array([0.18, 0.52, 0.16]), np.array([0.35, 0.70, 0.22])
    elif s.background == "sea":
        n = 0.5 + 0.35 * np.sin(y * 0.2 + 0.8 * np.sin(x * 0.08 + p[2]) + 0.1 * t) + 0.15 * np.sin(x * 0.1 + p[3])
        base, alt = np.array([0.05, 0.25, 0.55]), np.array([0.25, 0.55, 0.85])
    else:  # sand
        n = 0.5 + 0.3 * np.sin(x * 0.15 + y * 0.08 + 1.5 * np.sin(y * 0.1 + p[4])) + 0.2 * np.sin(y * 0.2 + p[5])
        base, alt = np.array([0.80, 0.68, 0.42]), np.array([0.93, 0.84, 0.60])
    n = np.clip(n, 0, 1)[None]
    return base[:, None, None] * (1 - n) + alt[:, None, None] * n


def render_frame(s: Scene, t: float, size: int = 64) -> np.ndarray:
    """float32 [3, size, size] in [-1, 1]."""
    return render_frame_and_mask(s, t, size)[0]


def render_frame_and_mask(s: Scene, t: float, size: int = 64) -> Tuple[np.ndarray, np.ndarray]:
    """(frame float32 [3, size, size] in [-1, 1], object coverage float32 [size, size] in [0, 1])."""
    scale = UNITS / size
    g = (np.arange(size, dtype=np.float64) + 0.5) * scale
    gy, gx = np.meshgrid(g, g, indexing="ij")
    img = _background(s, t, gx, gy)
    cx, cy, ang = object_state(s, t)
    # wrapped differences: the object is drawn on a torus (re-enters on the opposite side)
    dx = (gx - cx + UNITS / 2) % UNITS - UNITS / 2
    dy = (gy - cy + UNITS / 2) % UNITS - UNITS / 2
    ca, sa = math.cos(-ang), math.sin(-ang)
    qx, qy = ca * dx - sa * dy, sa * dx + ca * dy
    d = _shape_distance(s.shape, qx, qy, s.size) / scale         # in output pixels
    m = np.clip(0.5 - d, 0.0, 1.0)[None]
    col = np.asarray(RGB[s.colour])[:, None, None]
    if s.shape in ("square", "triangle", "star"):                 # slight shading so rotation is visible
        col = col * (0.85 + 0.15 * np.clip(qx / s.size, -1, 1))[None]
    img = img * (1 - m) + col * m
    return (img * 2.0 - 1.0).astype(np.float32), m[0].astype(np.float32)


def render(s: Scene, t0: int, n: int, size: int = 64, stride: int = 1) -> np.ndarray:
    """float32 [n, 3, size, size] in [-1, 1]: frames t0, t0+stride, ..."""
    return np.stack([render_frame(s, t0 + i * stride, size) for i in range(n)])


def render_with_masks(s: Scene, t0: int, n: int, size: int = 64) -> Tuple[np.ndarray, np.ndarray]:
    """(frames [n, 3, size, size], object masks [n, size, size])."""
    out = [render_frame_and_mask(s, t0 + i, size) for i in range(n)]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def write_png(path: str, rgb: np.ndarray) -> None:
    """Minimal RGB8 PNG writer (no PIL on the training machine); ``rgb`` is uint8 [H, W, 3]."""
    import struct
    import zlib
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[i].tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def sample_captions(n: int, seed: int = 0, kind: str = "full") -> List[str]:
    rng = np.random.default_rng(seed)
    return [caption(sample_scene(rng, kind)) for _ in range(n)]


def main() -> None:
    import argparse
    ap = argparse.ArgumentParser(description="write a PNG grid of world clips")
    ap.add_argument("--out", default="/tmp/world_grid.png")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=6)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--world", choices=WORLDS, default="full")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for _ in range(args.rows):
        s = sample_scene(rng, args.world)
        print(caption(s))
        v = render(s, 0, args.frames, 64, args.stride)
        rows.append(np.concatenate(list(v.transpose(0, 2, 3, 1)), axis=1))
    grid = ((np.concatenate(rows, axis=0) + 1) * 127.5).clip(0, 255).astype(np.uint8)
    write_png(args.out, grid)
    print(args.out)


if __name__ == "__main__":
    main()
