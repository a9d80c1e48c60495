"""Tone augmentation for stage 2 (session 10): teach the new frames to keep the conditioning frames' global tone.

Why: on the shipped model the frame's mean colour changes ~3x as much across a stage-2 seam as inside a window,
and ~6x across the stage-1 -> stage-2 hand-over (``bench/quality/metrics.py`` ``seam_tone`` / ``handover_tone``):
each window re-draws the scene in a tone of its own, not in the tone of the frames it continues (``stage_probe.py
stage2`` ``copy_tone``), and the jump reads as a scene cut. In the training windows the tone of the conditioning
frames always agrees with the caption and the anchor, so nothing in the data says which of them to follow.
(Measured in run 13: this augmentation, 1700 steps, hardly changed it; models/train/README.md "Run 13".)

What: a share of the training windows gets one random global colour transform over all 16 frames (so over the
8 conditioning frames and the frames to predict alike), x' = clamp(g * x + o, -1, 1) per RGB channel on pixels in
[-1, 1], g ~ U(1 - gain, 1 + gain), o ~ U(-offset, offset); the target latents are the VAE encoding (posterior
mean, as ``latents.build``) of the transformed frames. The caption and the APM anchor (frame 0 of the clip) are left
as they were, so the only source of the right tone is the conditioning frames."""
from typing import Tuple

import numpy as np
import torch

#: defaults: +-10 % contrast about mid grey and +-0.12 (15 grey levels of 255) offset, per channel
GAIN, OFFSET = 0.10, 0.12


def random_tone(rng: np.random.Generator, n: int, gain: float = GAIN,
                offset: float = OFFSET) -> Tuple[torch.Tensor, torch.Tensor]:
    """(g [n, 3], o [n, 3]): one colour transform per window, drawn from ``rng``."""
    if not (0.0 <= gain < 1.0 and offset >= 0.0):
        raise ValueError(f"tone gain must be in [0, 1) and offset >= 0, not {gain!r}, {offset!r}")
    g = torch.from_numpy(rng.uniform(1.0 - gain, 1.0 + gain, size=(n, 3))).float()
    o = torch.from_numpy(rng.uniform(-offset, offset, size=(n, 3))).float()
    return g, o


def apply_tone(video: torch.Tensor, g: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """``video`` [B, 3, F, H, W] in [-1, 1] -> clamp(g * video + o, -1, 1), g and o [B, 3] (one per window)."""
    if video.dim() != 5 or video.shape[1] != 3 or g.shape != (video.shape[0], 3) or o.shape != g.shape:
        raise ValueError(f"apply_tone: video [B,3,F,H,W] with g, o [B,3]; got {tuple(video.shape)}, "
                         f"{tuple(g.shape)}, {tuple(o.shape)}")
    shape = (video.shape[0], 3, 1, 1, 1)
    return (video * g.view(shape).to(video) + o.view(shape).to(video)).clamp(-1.0, 1.0)
