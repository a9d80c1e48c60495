"""Latent dataset of the stage-1/2 trainers: world clips rendered once and encoded once with the trained VAE.

Encoding a 16-frame clip with the tiny VAE costs about as much as half a UNet training step, so the trainers do
not encode per step: ``build`` renders ``n`` clips of ``frames`` frames (scene ``i`` and its start frame come from
one seeded stream, whatever the number of parts), encodes them (posterior mean) and stores, per clip, the latents
``z [4, L, 8, 8]``, the loss weights ``w [1, L, 8, 8]`` (1 + 3 x object present in the latent cell), the caption,
the scene and start frame (so conditioning frames can be re-rendered) and the anchor (frame 0 of the scene).

    /usr/bin/python3 -m models.train.latents --out DIR --part 0/2   # and --part 1/2 in a second process
"""
import argparse
import os
import sys
from dataclasses import dataclass, replace
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .. import world
from . import common as C

CLIPS, FRAMES, SEED = 1200, 48, 11
#: The centred set (``stage1_centred``): 16-frame clips whose object starts within +-CENTRE_JITTER units of the
#: frame centre (see ``_plan``).
CENTRED_CLIPS, CENTRED_SEED, CENTRE_JITTER = 3000, 12, 8.0
#: The turn set (``stage2_turn``): 16-frame clips whose object moves another way in frames 0-7 (the conditioning
#: frames of a stage-2 window) and the caption's way from frame ``TURN_AT`` on (see ``turn_pre``).
TURN_CLIPS, TURN_SEED, TURN_AT = 2000, 13, 8


def _path(out: str, part: int, parts: int, kind: str = "") -> str:
    return os.path.join(out, f"latents{'_' + kind if kind else ''}_{part}of{parts}.pt")


def _plan(n: int, seed: int, centred: bool = False) -> Tuple[List[world.Scene], List[int]]:
    """Scenes and start frames. ``centred``: each scene is moved so that its object is at the frame centre plus a
    uniform offset of at most ``CENTRE_JITTER`` units per axis at its start frame (the first window of a video).

    Why: the object of a world clip wraps around the frame, so over all windows its position is uniform, and at high
    noise the best x0 prediction (a blur over every position) is the same for every direction: the direction words
    get no gradient there, and later the motion is visible in the noisy frames themselves. Measured on run 4's
    stage 1 (``bench/quality/stage_probe.py words``): swapping the caption's direction changed its x0 error by
    -0.02 % against +272 % for the colour. With the start position known up to the jitter, the direction decides
    where the object is in every later frame; run 5 needed pure-noise first-step samples too
    (``stages.diffusion_loss``, ``terminal_p``) before the UNet used it."""
    rng = np.random.default_rng(seed)
    scenes = [world.sample_scene(rng, C.WORLD) for _ in range(n)]
    starts = [int(v) for v in rng.integers(0, 400, size=n)]
    if centred:
        jit = rng.uniform(-CENTRE_JITTER, CENTRE_JITTER, size=(n, 2))
        scenes = [centre_scene(s, t0, dx, dy) for s, t0, (dx, dy) in zip(scenes, starts, jit)]
    return scenes, starts


def centre_scene(s: world.Scene, t0: float, dx: float = 0.0, dy: float = 0.0) -> world.Scene:
    """``s`` moved so that its object is at the frame centre + (dx, dy) at frame ``t0`` (nothing else changes)."""
    x, y, _ = world.object_state(s, t0)
    c = world.UNITS / 2
    return replace(s, x0=(s.x0 + c + dx - x) % world.UNITS, y0=(s.y0 + c + dy - y) % world.UNITS)


def turn_scene(s: world.Scene, t: float, direction: str) -> world.Scene:
    """``s`` moving in ``direction`` instead, moved so that its object is where ``s`` has it at frame ``t`` (same
    speed law, nothing else changes)."""
    a = replace(s, direction=direction)
    x, y, _ = world.object_state(s, t)
    xa, ya, _ = world.object_state(a, t)
    return replace(a, x0=(a.x0 + x - xa) % world.UNITS, y0=(a.y0 + y - ya) % world.UNITS)


def turn_pre(scenes: List[world.Scene], starts: List[int], seed: int) -> List[world.Scene]:
    """The scenes of frames 0 .. TURN_AT - 1 of the turn set: each clip's scene with one of the three other
    directions (uniform), meeting the clip's own scene at frame TURN_AT. From frame TURN_AT - 1 to TURN_AT the
    object still takes the old direction's step, then the caption's.

    Why (session 6): the stage-2 UNet continues its conditioning frames' motion, and on every training window that
    motion is the caption's, so it never had to read the direction from the caption (``stage_probe.py words --unet
    stage2``: swapping it changed the error by -0.2 %). In the pipeline a wrong or drifting motion in the
    conditioning frames is then continued for the rest of the video (run 5: 11 of 24 videos start in the prompt's
    direction, 4 of 24 keep it). On these clips only the caption says where the new frames go."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for s, t0 in zip(scenes, starts):
        others = [d for d in world.DIRECTIONS if d != s.direction]
        out.append(turn_scene(s, t0 + TURN_AT, others[int(rng.integers(len(others)))]))
    return out


def render_clip(s: world.Scene, t0: int, n: int, pre: Optional[world.Scene] = None, size: int = 64,
                offset: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(frames [n, 3, size, size], masks [n, size, size]) of clip frames ``offset`` .. ``offset + n - 1`` starting
    at scene frame ``t0``; with ``pre``, clip frames before TURN_AT come from ``pre`` (the turn set)."""
    out = [world.render_frame_and_mask(pre if pre is not None and offset + k < TURN_AT else s, t0 + offset + k, size)
           for k in range(n)]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def cell_weights(masks: np.ndarray) -> torch.Tensor:
    """[1, L, 8, 8] loss weights of a clip's latent cells from its object masks [L, 64, 64]: 1, plus 3 where the
    object covers any pixel of the cell (the weights stored with every latent set)."""
    return 1.0 + 3.0 * F.max_pool3d(torch.from_numpy(masks)[None, None].float(), (1, 8, 8))[0]


def turn_kw(clips: int = CLIPS) -> dict:
    """``build`` arguments of the turn set, its clip count scaled with the main set's ``clips``."""
    return {"n": max(2, round(TURN_CLIPS * clips / CLIPS)), "frames": 16, "seed": TURN_SEED, "turn": True}


def centred_kw(clips: int = CLIPS) -> dict:
    """``build`` arguments of the centred set, its clip count scaled with the main set's ``clips``."""
    return {"n": max(2, round(CENTRED_CLIPS * clips / CLIPS)), "frames": 16, "seed": CENTRED_SEED, "centred": True}


@torch.no_grad()
def build(out: str, vae, part: int = 0, parts: int = 1, n: int = CLIPS, frames: int = FRAMES,
          seed: int = SEED, centred: bool = False, turn: bool = False) -> str:
    """Encodes clips ``part::parts`` of the plan into ``<out>/latents_<part>of<parts>.pt`` (skipped if present);
    ``centred``: the centred set (``_plan``) into ``latents_centred_<part>of<parts>.pt``; ``turn``: the turn set
    (``turn_pre``) into ``latents_turn_<part>of<parts>.pt``."""
    path = _path(out, part, parts, _kind(centred, turn))
    if os.path.exists(path):
        return path
    scenes, starts = _plan(n, seed, centred)
    pre = turn_pre(scenes, starts, seed) if turn else [None] * n
    idx = list(range(part, n, parts))
    zs, ws, anchors = [], [], []
    vae = vae.to(C.DEVICE)
    for i in idx:
        f, m = render_clip(scenes[i], starts[i], frames, pre[i])
        x = torch.from_numpy(f).permute(1, 0, 2, 3)[None].to(C.DEVICE)   # [1, 3, L, 64, 64]
        mean, _ = vae.video_encoder()(x)
        zs.append(mean[0].cpu())
        ws.append(cell_weights(m))
        anchors.append(torch.from_numpy(world.render_frame(scenes[i], 0, 64)))
    torch.save({"index": idx, "z": torch.stack(zs), "w": torch.stack(ws), "anchor": torch.stack(anchors),
                "frames": frames, "seed": seed, "n": n, "world": C.WORLD, "centred": centred, "turn": turn},
               path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


@dataclass
class LatentSet:
    z: torch.Tensor              # [N, 4, L, 8, 8]
    w: torch.Tensor              # [N, 1, L, 8, 8]
    anchor: torch.Tensor         # [N, 3, 64, 64]
    scenes: List[world.Scene]
    starts: List[int]
    pre: Optional[List[world.Scene]] = None   # the turn set: the scenes of frames 0 .. TURN_AT - 1

    @property
    def frames(self) -> int:
        return self.z.shape[2]

    def windows(self, rng: np.random.Generator, batch: int, length: int = 16, vertical_p: Optional[float] = None):
        """(z [B,4,length,8,8], w, clip indices, window starts within the clips). Clips are drawn uniformly, or with
        ``vertical_p``: each window's clip is one whose caption says up or down with that probability, else one
        that says left or right (uniform within the axis; see ``models.train.all --vertical-p``)."""
        if vertical_p is None:
            ids = rng.integers(0, self.z.shape[0], size=batch)
        else:
            vert = self.vertical_clips()
            pools = (np.nonzero(~vert)[0], np.nonzero(vert)[0])
            if not len(pools[0]) or not len(pools[1]):
                raise ValueError("vertical_p needs clips of both axes in the latent set")
            picks = []
            for _ in range(batch):
                pool = pools[int(rng.random() < vertical_p)]
                picks.append(pool[rng.integers(len(pool))])
            ids = np.array(picks, dtype=np.int64)
        offs = rng.integers(0, self.frames - length + 1, size=batch)
        z = torch.stack([self.z[i, :, o:o + length] for i, o in zip(ids, offs)])
        w = torch.stack([self.w[i, :, o:o + length] for i, o in zip(ids, offs)])
        return z, w, ids, offs

    def captions(self, ids) -> List[str]:
        return [world.caption(self.scenes[i]) for i in ids]

    def vertical_clips(self) -> np.ndarray:
        """[N] bool: whether each clip's caption says up or down (the axis of its new frames' motion)."""
        return np.array([s.direction in ("up", "down") for s in self.scenes])

    def render(self, i: int, offset: int, n: int) -> torch.Tensor:
        """Pixels [3, n, 64, 64] of clip ``i`` from window offset ``offset`` (true renders)."""
        pre = self.pre[i] if self.pre is not None else None
        return torch.from_numpy(render_clip(self.scenes[i], self.starts[i], n, pre, offset=offset)[0]).permute(1, 0, 2, 3)


def boundary_cells(data: LatentSet) -> torch.Tensor:
    """[N, 1, L, 8, 8]: 1 where a latent cell holds part of the object's outline (the object covers between 5 % and
    95 % of the cell's 8x8 pixels), else 0, from the clips' masks re-rendered (``render_clip``; about 7 ms a clip).

    Why (session 14, ``stage1_centred --boundary-weight``): a square and a circle of the same size differ only in
    such cells (their corners), a small share of the loss that the stored weights (1 + 3 x object present) spread
    over the whole object."""
    out = []
    for i in range(data.z.shape[0]):
        m = render_clip(data.scenes[i], data.starts[i], data.frames, data.pre[i] if data.pre is not None else None)[1]
        cover = F.avg_pool3d(torch.from_numpy(m)[None, None], (1, 8, 8))[0]
        out.append(((cover > 0.05) & (cover < 0.95)).float())
    return torch.stack(out)


def _kind(centred: bool, turn: bool) -> str:
    if centred and turn:
        raise ValueError("a latent set is centred or a turn set, not both")
    return "centred" if centred else "turn" if turn else ""


def load(out: str, parts: int = 2, centred: bool = False, turn: bool = False) -> LatentSet:
    paths = [_path(out, p, parts, _kind(centred, turn)) for p in range(parts)]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        flag = " --centred" if centred else " --turn" if turn else ""
        raise FileNotFoundError(f"latent set missing: {', '.join(missing)}; encode it first with "
                                f"python3 -m models.train.latents --out {out} --part K/{parts}{flag} (K = 0 .. {parts - 1})")
    blobs = [torch.load(p, map_location="cpu") for p in paths]
    n, seed = blobs[0]["n"], blobs[0]["seed"]
    order = np.argsort(np.concatenate([b["index"] for b in blobs]))
    cat = lambda k: torch.cat([b[k] for b in blobs])[torch.from_numpy(order)]  # noqa: E731
    scenes, starts = _plan(n, seed, centred)
    return LatentSet(cat("z"), cat("w"), cat("anchor"), scenes, starts, turn_pre(scenes, starts, seed) if turn else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--part", default="0/1", help="K/N: encode clips K, K+N, ... (run N processes)")
    ap.add_argument("--centred", action="store_true", help="the centred 16-frame set of stage1_centred")
    ap.add_argument("--turn", action="store_true", help="the turn 16-frame set of stage2_turn")
    ap.add_argument("--clips", type=int, default=CLIPS,
                    help="clips of the main set (the centred and turn sets scale with it; models.train.all --clips)")
    args = ap.parse_args(argv)
    if args.centred and args.turn:
        ap.error("--centred or --turn, not both")
    part, parts = (int(v) for v in args.part.split("/"))
    C.setup_torch(1)
    from .components import load_vae
    kw = centred_kw(args.clips) if args.centred else turn_kw(args.clips) if args.turn else {"n": args.clips}
    print(build(args.out, load_vae(args.out), part, parts, **kw), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
