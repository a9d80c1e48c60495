"""Shape-pair loss for stage 1 (session 18): make "square" and "circle" change the prediction.

Why: no stage-1 UNet trained so far tells a square from a circle. Given the same noise, its samples under the two
words have the same bounding-box fill (0.759 / 0.751 shipped; 0.714 / 0.710 at 1.5x the width, session 18), and
its x0 estimate from a true square is the same under either word at every noise level (``stage_probe.py
corners``). The two shapes differ only in their corner cells, a small part of each window's loss, and the
ordinary loss mixes the gradient toward them with the much larger errors every window has in position, colour
and motion, which the word does not predict.

What: some square or circle windows of a batch get a partner, the same clip re-rendered with the other shape
(same position, size, colour, motion, background) and encoded by the VAE, with its caption's shape word swapped.
Both are noised with the same timestep t and noise ε. With x̂0 = α z_t - σ v̂ (v-prediction) the loss is

    L_pair = Σ w ((x̂0_a - x̂0_b) - (z0_a - z0_b))² / Σ w

the error of the *difference* between the two estimates: whatever both get wrong alike (where the object is, the
background) cancels, and what is left is what the shape, and at high noise only the word, accounts for. ``w`` is
the larger of the two windows' stored cell weights (1 + 3 x object present). t is uniform over the schedule
(the pairs are an extra term; the ordinary loss keeps its own weighting). Captions are never dropped for pairs.

Stage 2 (session 19) uses the same loss with everything the window is conditioned on swapped too: the partner's
conditioning frames are its own clip's frames 0-7 (or their VAE round trip where the step round-trips the
window's), its anchor is frame 0 of the re-shaped scene (``partner_anchors``), and both halves see their own
conditioning frames. Stage 2 draws frames 16-240 of every video, so stage 1's squares last only if stage 2 keeps
the shape its conditioning frames, anchor and caption show.

Direction pairs (session 20; ``kind="direction"``, stage1_centred only): the partner is the same window with the
object moving the opposite way from where it is at the window's first frame (``latents.turn_scene``), the
caption's direction word swapped to match. Why: stage 1 learns the sense of the motion only after ~3000 centred
steps on both cores (run 5), because at every noise level but the highest the noisy input already shows the
motion, so the caption's direction word gets almost no gradient. With the same noise the two halves' inputs
differ only by the motion, and at high noise hardly at all: there the difference of the two estimates can only
come from the word. ``t_from`` draws the pair's timesteps from [t_from, 999] so that the term works where the
word is needed (the sampler's first steps).
"""
import dataclasses
from typing import Callable, List, Tuple

import numpy as np
import torch

from .. import world
from . import latents as L

#: the pairs the loss is built from: the two shapes no stage 1 so far told apart
PARTNER = {"square": "circle", "circle": "square"}
#: direction pairs: the opposite sense on the same axis (the axis came first in run 5, the sense last)
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
KINDS = ("shape", "direction")


def check_options(p: float, weight: float, names: Tuple[str, str] = ("pair_p", "pair_weight")) -> None:
    """Raises ValueError unless the share ``p`` is in [0, 1], ``weight`` >= 0 and both are set or both 0 (the
    trainers' keywords, or the CLI's flags as ``names``)."""
    if not (0.0 <= p <= 1.0 and weight >= 0.0) or (p > 0) != (weight > 0):
        raise ValueError(f"{names[0]} must be in [0, 1] and {names[1]} >= 0, both set or both 0; got {p}, {weight}")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"pair kind must be one of {KINDS}, not {kind!r}")


def pick(rng: np.random.Generator, data: "L.LatentSet", ids, share: float, kind: str = "shape") -> List[int]:
    """Batch positions that get a partner, each kept with probability ``share``: clips that show a square or a
    circle (``kind="shape"``), or every clip (``kind="direction"``)."""
    _check_kind(kind)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{kind}-pair share must be in [0, 1], not {share!r}")
    return [j for j, i in enumerate(ids) if (kind == "direction" or data.scenes[i].shape in PARTNER)
            and rng.random() < share]


def swap_shape(caption: str, shape: str) -> str:
    """``caption`` with its shape word replaced by the partner's (the grammar has exactly one shape word)."""
    words = caption.split(" ")
    if words.count(shape) != 1:
        raise ValueError(f"caption {caption!r} must name {shape!r} exactly once")
    return " ".join(PARTNER[shape] if w == shape else w for w in words)


def partner_scene(s: "world.Scene", kind: str = "shape", at: float = 0.0) -> "world.Scene":
    """The scene with its shape replaced by the partner's (everything else the same), or (``kind="direction"``)
    moving the opposite way from where ``s`` has its object at frame ``at``."""
    _check_kind(kind)
    if kind == "direction":
        return L.turn_scene(s, at, OPPOSITE[s.direction])
    return dataclasses.replace(s, shape=PARTNER[s.shape])


@torch.no_grad()
def partners(data: "L.LatentSet", encoder: Callable, ids, offs, picks: List[int],
             kind: str = "shape") -> Tuple[torch.Tensor, torch.Tensor, List[str], torch.Tensor]:
    """(z0 [m, 4, 16, 8, 8] posterior means, cell weights [m, 1, 16, 8, 8], captions, pixels [m, 3, 16, 64, 64]) of
    the picked windows re-rendered with the partner shape, or the opposite direction from the window's first frame
    on (``latents.render_clip`` at the window's own offset, the encoder the latent set was made with; z0 on the
    encoder's device, the rest on the CPU)."""
    frames, weights, caps = [], [], []
    for j in picks:
        i = ids[j]
        other = partner_scene(data.scenes[i], kind, data.starts[i] + int(offs[j]))
        pre = data.pre[i] if data.pre is not None else None
        if pre is not None and kind == "direction":
            raise ValueError("direction pairs need windows of one scene (not the turn set)")
        f, m = L.render_clip(other, data.starts[i], 16, pre, offset=int(offs[j]))
        frames.append(torch.from_numpy(f).permute(1, 0, 2, 3))
        weights.append(L.cell_weights(m))
        caps.append(world.caption(other))
    video = torch.stack(frames)
    mean, _ = encoder(video.to(next(encoder.parameters()).device))
    return mean, torch.stack(weights), caps, video


def partner_anchors(data: "L.LatentSet", ids, picks: List[int]) -> torch.Tensor:
    """[m, 3, 64, 64]: the anchors (scene frame 0, as ``latents.build`` stores them) of the picked windows' partner
    scenes."""
    return torch.stack([torch.from_numpy(world.render_frame(partner_scene(data.scenes[ids[j]]), 0, 64))
                        for j in picks])


def pair_loss(predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], z_a: torch.Tensor,
              z_b: torch.Tensor, w: torch.Tensor, ctx_a: torch.Tensor, ctx_b: torch.Tensor,
              ac: torch.Tensor, t_from: int = 0) -> torch.Tensor:
    """L_pair above for v-prediction. ``predict(z_t, t, ctx)`` -> v̂; both halves in one batch, same t and ε; t
    uniform over [t_from, T - 1]."""
    if not 0 <= t_from < ac.numel():
        raise ValueError(f"t_from must be in [0, {ac.numel() - 1}], not {t_from!r}")
    m = z_a.shape[0]
    t = torch.randint(t_from, ac.numel(), (m,)).to(z_a.device)
    noise = torch.randn_like(z_a)
    a = ac.to(z_a.device)[t]
    al, sg = a.sqrt().view(-1, 1, 1, 1, 1), (1 - a).sqrt().view(-1, 1, 1, 1, 1)
    zt = torch.cat([al * z_a + sg * noise, al * z_b + sg * noise])
    v = predict(zt, torch.cat([t, t]).float(), torch.cat([ctx_a, ctx_b]))
    x0 = torch.cat([al, al]) * zt - torch.cat([sg, sg]) * v
    err = (x0[:m] - x0[m:]) - (z_a - z_b)
    w = w.expand_as(err)
    return (err ** 2 * w).sum() / w.sum()
