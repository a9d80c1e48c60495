"""Drift augmentation for stage 2 (session 16): teach APM to pull a drifting object back to the anchor.

Why: over 24 prompts x 2 seeds the shipped model's object drifts as much with APM as without it (colour drift 15.7
/ 14.1 against 15.7 / 12.9, size ratio 1.15 / 1.20 against 1.22 / 1.24; models/train/README.md "Session 15"). In
every training window the conditioning frames show the object exactly as the anchor (frame 0 of the clip) does,
so the anchor never tells stage 2 anything the conditioning frames do not, and nothing teaches it to correct
the small changes of colour and size that build up over the model's own windows at inference.

What: a share of the training windows (those not re-toned) is drawn with an object of its own look: its radius
scaled by k1 (``log k ~ U(-log SIZE, log SIZE)``; the frames are re-rendered from the scene with that radius) and
its pixels offset by d1 per RGB channel (``d ~ U(-COLOUR, COLOUR)`` on pixels in [-1, 1], weighted by the object's
coverage, clamped), in all 16 frames and in the anchor alike, so the window keeps whatever look the anchor and the
conditioning frames show instead of the caption's canonical one. In half of these windows the 8 conditioning
frames drift further, (k1 k2, d1 + d2), while the frames to predict and the anchor keep (k1, d1): then the right
look comes only from the anchor. Where the training step drops the anchor (classifier-free guidance's
unconditional half), all 16 frames follow the conditioning frames' drift, so without the anchor the new frames
continue the conditioning frames: guidance then extrapolates the anchor's correction, as it extrapolates the
caption.
"""
import dataclasses
import math
from typing import Optional, Tuple

import numpy as np
import torch

from .. import world
from . import latents as L

#: defaults: radius x 1/1.2 .. x 1.2 and +-0.15 (19 grey levels of 255) per channel on the object
SIZE, COLOUR = 1.2, 0.15


def random_drift(rng: np.random.Generator, n: int, size: float = SIZE,
                 colour: float = COLOUR) -> Tuple[np.ndarray, np.ndarray]:
    """(k [n], delta [n, 3]): one radius factor and one colour offset per window, drawn from ``rng``."""
    if not (size >= 1.0 and colour >= 0.0):
        raise ValueError(f"drift size must be >= 1 and colour >= 0, not {size!r}, {colour!r}")
    k = np.exp(rng.uniform(-math.log(size), math.log(size), size=n))
    delta = rng.uniform(-colour, colour, size=(n, 3))
    return k, delta


def render_drifted(scene: world.Scene, t0: int, n: int, k: float, delta: np.ndarray,
                   pre: Optional[world.Scene] = None, offset: int = 0) -> torch.Tensor:
    """Pixels [3, n, 64, 64] in [-1, 1] of clip frames ``offset`` .. ``offset + n - 1`` (as ``latents.render_clip``)
    with the object's radius times ``k`` and ``delta`` [3] added to its pixels in proportion to its coverage."""
    if delta.shape != (3,) or not k > 0:
        raise ValueError(f"render_drifted: k > 0 and delta [3]; got {k!r}, {tuple(delta.shape)}")
    grow = lambda s: None if s is None else dataclasses.replace(s, size=s.size * k)    # noqa: E731
    frames, masks = L.render_clip(grow(scene), t0, n, grow(pre), offset=offset)
    frames = np.clip(frames + masks[:, None] * delta.astype(np.float32)[None, :, None, None], -1.0, 1.0)
    return torch.from_numpy(frames.astype(np.float32)).permute(1, 0, 2, 3)
