"""Train every component of the embedded default model (recipe 2) on two CPU cores, then write
``<out>/weights.pt`` ({role: state_dict}) for ``python3 -m models.export --config tiny --weights <out>/weights.pt``.

    /usr/bin/python3 -m models.train.all --out /tmp/st2v-train [--budget-minutes 60]

Timeline (process A = this one, process B = a second one-thread process):

    A: VAE -> latents 0/2 -> stage 1 (text + UNet) -> stage1_more (UNet, text frozen) -> stage1_centred -> enhancer
    B:        latents 1/2 -> VAE decoder fine-tuning -> stage 2 (CAM + APM, base from stage 1)

(each latents part also encodes its half of the centred 16-frame set of stage1_centred, ``latents._plan``).
``stage2_turn`` (run 6 did not ship; run 7's, with ``--turn-base-unet stage1_centred``, is the shipped stage 2:
see models/train/README.md "Run 6" and "Run 7") is not part of the recipe: after
``python3 -m models.train.latents --out DIR --part K/2 --turn`` (K = 0, 1), ``--only stage2_turn`` trains it, and
``--collect`` then takes it instead of stage2.pt; ``--collect --collect-checkpoint stage2_turn`` takes the EMA
weights of its last checkpoint instead (a run exported and probed midway).
With ``--stage2-base stage1_more`` (run 3 on) stage 2 starts after stage1_more, beside stage1_centred and the
enhancer.

``--recipe 3`` (session 12) trains the shipped model's chain (runs 2-12) in one run, with the turn set encoded
beside the other latents:

    A: VAE -> latents 0/2 -> stage 1 (text + UNet) -> stage1_centred (from stage 1)  -> stage2_turn rank 0
    B:        latents 1/2 -> VAE decoder fine-tuning -> enhancer -> (waits)          -> stage2_turn rank 1

(stage2_turn with ``fresh``: from stage1_centred's UNet, not continuing a stage2.pt; ``STEPS3``/``SHARE3``;
run 15 measured it at 60 minutes, see models/train/README.md "Recipe 3"). ``--only COMPONENT --ranks 2`` trains
one component data-parallel on both cores (``common.set_ranks``).
``--device cuda`` trains the networks on a GPU (``--batch-mult`` for larger batches); see the README "Training on
a GPU".

Step counts are fixed, so a run is reproducible (same seeds, same steps, same single-thread CPU kernels); each
component also gets a share of the wall-clock budget (``SHARE``) that stops it early on a slow machine; that is
logged ("stopped by wall-clock budget" at step N) and ``--stop-at COMPONENT=N`` replays such a run exactly.
Re-running the command resumes from the checkpoints. Losses are appended to ``<out>/losses.jsonl``.
"""
import argparse
import inspect
import os
import socket
import subprocess
import sys
import threading
import time

import torch

from ..configs_unet import get_config as get_net_config, with_widths
from . import common as C
from . import components as K
from . import latents as L
from . import shape_pair as SP
from . import stages as S
from . import drift as D
from . import tone as T

STEPS = {"vae": 5000, "vae_ft": 4000, "stage1": 850, "stage2": 1300, "stage1_more": 1900, "enhancer": 800,
         "stage1_centred": 3000, "stage2_turn": 1500}
SHARE = {"vae": 0.12, "vae_ft": 0.21, "stage1": 0.23, "stage2": 0.60, "stage1_more": 0.30, "enhancer": 0.22,
         "stage1_centred": 0.20, "stage2_turn": 0.30}
#: Recipe 3 (session 12): the shipped model's chain in one run. Process A trains stage 1 -> stage1_centred (from
#: stage 1) and then waits for B (latents -> vae_ft -> enhancer, 0.43 of the budget) to train stage2_turn from
#: stage1_centred's UNet on both cores (two ranks); the step counts are caps, the shares stop the components.
STEPS3 = {**STEPS, "stage1": 2000, "stage1_centred": 2000, "stage2_turn": 3000}
SHARE3 = {**SHARE, "stage1": 0.27, "stage1_centred": 0.17, "stage2_turn": 0.38}


def _trainer(name: str):
    return {"vae": K.train_vae, "vae_ft": K.train_vae_decoder, "stage1": S.train_stage1, "stage2": S.train_stage2, "enhancer": K.train_enhancer,
            "stage1_more": lambda out, **kw: S.train_stage1(out, more=True, **kw),
            "stage1_centred": lambda out, **kw: S.train_stage1(out, more=True, centred=True, **kw),
            "stage2_turn": lambda out, **kw: S.train_stage2(out, turn=True, **kw)}[name]


def _spawn(args, what: list, log: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "models.train.all", "--out", args.out, "--budget-minutes", str(args.budget_minutes),
           "--recipe", str(args.recipe), "--vertical-p-stage1", str(args.vertical_p_stage1),
           "--steps-scale", str(args.steps_scale), "--clips", str(args.clips), "--cam-lr-mult", str(args.cam_lr_mult),
           "--cam-init", args.cam_init, "--stage2-base", args.stage2_base, "--motion-loss", str(args.motion_loss),
           "--device", args.device, "--batch-mult", str(args.batch_mult), "--text-lr-mult", str(args.text_lr_mult),
           "--xattn-lr-mult", str(args.xattn_lr_mult), "--terminal-p", str(args.terminal_p),
           "--boundary-weight", str(args.boundary_weight), "--shape-pair-p", str(args.shape_pair_p),
           "--shape-pair-weight", str(args.shape_pair_weight), "--dir-pair-p", str(args.dir_pair_p),
           "--dir-pair-weight", str(args.dir_pair_weight), "--dir-pair-t-from", str(args.dir_pair_t_from),
           "--turn-p", str(args.turn_p), "--tone-p", str(args.tone_p), "--tone-gain", str(args.tone_gain),
           "--tone-offset", str(args.tone_offset), "--drift-p", str(args.drift_p), "--drift-size",
           str(args.drift_size), "--drift-colour", str(args.drift_colour), "--vae-edge-weight",
           str(args.vae_edge_weight), "--vae-jitter", str(args.vae_jitter), "--enhancer-loss", args.enhancer_loss] + what
    if args.stage2_lr is not None:
        cmd += ["--stage2-lr", str(args.stage2_lr)]
    if args.turn_terminal_p is not None:
        cmd += ["--turn-terminal-p", str(args.turn_terminal_p)]
    if args.turn_base_unet:
        cmd += ["--turn-base-unet", args.turn_base_unet]
    if args.enhancer_init:
        cmd += ["--enhancer-init", args.enhancer_init]
    if args.vertical_p is not None:
        cmd += ["--vertical-p", str(args.vertical_p)]
    if args.unet_channels is not None:
        cmd += ["--unet-channels", args.unet_channels]
    cmd += [f"--stop-at={s}" for s in args.stop_at] + [f"--steps={s}" for s in args.steps]
    return subprocess.Popen(cmd, stdout=open(os.path.join(args.out, log), "a"), stderr=subprocess.STDOUT)


def _wait(p: subprocess.Popen, what: str) -> None:
    if p.wait() != 0:
        raise SystemExit(f"{what} failed (exit {p.returncode}); see its log in the output directory")


def _encode_latents(args, k: int, n: int) -> None:
    """Encodes part ``k`` of ``n`` of every latent set the recipe trains on (main, centred; recipe 3: turn too)."""
    vae = K.load_vae(args.out)
    sets = [{"n": args.clips}, L.centred_kw(args.clips)] + ([L.turn_kw(args.clips)] if args.recipe == 3 else [])
    for kw in sets:
        L.build(args.out, vae, k, n, **kw)


class _Chain(threading.Thread):
    """Process B of recipe 3: components trained one after another, each in its own process (``_spawn``)."""

    def __init__(self, args, parts: list):
        super().__init__(daemon=True)
        self.args, self.parts, self.error = args, parts, None

    def run(self) -> None:
        for what, log in self.parts:
            p = _spawn(self.args, what, log)
            if p.wait() != 0:
                self.error = f"{' '.join(what)} failed (exit {p.returncode}); see {log} in the output directory"
                return

    def finish(self) -> None:
        self.join()
        if self.error:
            raise SystemExit(self.error)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-minutes", type=float, default=60.0)
    ap.add_argument("--recipe", type=int, choices=[2, 3], default=2,
                    help="2: runs 2-5's timeline (stage 2 beside stage1_more); 3 (session 12): stage 1 -> "
                         "stage1_centred -> stage2_turn from its UNet on both cores, with the turn set, in one run "
                         "(see models/train/README.md 'Recipe 3')")
    ap.add_argument("--vertical-p-stage1", type=float, default=-1.0,
                    help="recipe 3: --vertical-p of stage1_centred alone (default: --vertical-p)")
    ap.add_argument("--only", choices=sorted(STEPS), help="train one component (used for process B)")
    ap.add_argument("--latents-part", help="K/N: only encode that part of the latent dataset (process B)")
    ap.add_argument("--steps-scale", type=float, default=1.0, help="multiply all step counts (smoke tests)")
    ap.add_argument("--clips", type=int, default=L.CLIPS, help="clips in the latent dataset")
    ap.add_argument("--no-enhancer", action="store_true", help="leave the stage-3 enhancer random")
    ap.add_argument("--cam-lr-mult", type=float, default=1.0,
                    help="learning-rate multiplier of the CAM mergers in stage 2 (run 2: 1; see stages.train_stage2)")
    ap.add_argument("--cam-init", choices=["zero", "small"], default="zero",
                    help="initialisation of the CAM frame encoder's conv_out in stage 2 (run 2: zero; see "
                         "stages.train_stage2)")
    ap.add_argument("--stage2-base", choices=["stage1", "stage1_more"], default="stage1",
                    help="stage-1 result that starts the stage-2 UNet (run 2: stage1)")
    ap.add_argument("--motion-loss", type=float, default=0.0,
                    help="weight of the frame-difference x0 term in the stage-1/2 losses (run 4; see "
                         "stages.diffusion_loss)")
    ap.add_argument("--text-lr-mult", type=float, default=0.0,
                    help="stage1_centred: train the text encoder too at this multiple of the rate (0: frozen)")
    ap.add_argument("--terminal-p", type=float, default=0.0,
                    help="stage1_centred, stage2_turn: share of samples trained as the sampler's first step (t = 999, "
                         "pure noise; see stages.diffusion_loss)")
    ap.add_argument("--enhancer-loss", choices=list(K.ENHANCER_LOSSES), default="x0",
                    help="enhancer: x0 = every timestep's x0 error alike (runs 2-22); min_snr = weighted by min(SNR, 5) + 1 "
                         "like stages 1-2, which teaches the low noise levels the SDE sampler ends at (session 22)")
    ap.add_argument("--enhancer-init", default=None,
                    help="enhancer: start from this torch file's enhancer_unet / enhancer_text_encoder state dicts "
                         "(e.g. from_export's enhancer.pt) instead of random weights")
    ap.add_argument("--turn-p", type=float, default=0.3,
                    help="stage2_turn: share of each batch from the turn set (conditioning frames moving another way "
                         "than the caption; see latents.turn_pre)")
    ap.add_argument("--turn-terminal-p", type=float, default=None,
                    help="stage2_turn: --terminal-p of the turn clips alone (default: --terminal-p)")
    ap.add_argument("--turn-base-unet", choices=["stage1_more", "stage1_centred"], default=None,
                    help="stage2_turn: start the base UNet from this stage-1 result instead of stage2.pt's (CAM and "
                         "APM stay stage 2's)")
    ap.add_argument("--vertical-p", type=float, default=None,
                    help="stage1_centred, stage2, stage2_turn: share of training windows whose caption says up or "
                         "down (default: clips drawn uniformly, about half; see latents.LatentSet.windows)")
    ap.add_argument("--tone-p", type=float, default=0.0,
                    help="stage2, stage2_turn: share of training windows given one random global colour transform "
                         "over all 16 frames, conditioning frames and target alike (session 10; see tone.py)")
    ap.add_argument("--tone-gain", type=float, default=T.GAIN,
                    help="with --tone-p: contrast range, g ~ U(1 - GAIN, 1 + GAIN) per channel (tone.py)")
    ap.add_argument("--tone-offset", type=float, default=T.OFFSET,
                    help="with --tone-p: offset range, o ~ U(-OFFSET, OFFSET) per channel on pixels in [-1, 1]")
    ap.add_argument("--drift-p", type=float, default=0.0,
                    help="stage2, stage2_turn: share of training windows whose object gets a radius and colour of "
                         "its own (clip and anchor), half of them with the conditioning frames drifted further "
                         "(session 16; see drift.py)")
    ap.add_argument("--drift-size", type=float, default=D.SIZE,
                    help="with --drift-p: radius factor k, log k ~ U(-log SIZE, log SIZE) (drift.py)")
    ap.add_argument("--drift-colour", type=float, default=D.COLOUR,
                    help="with --drift-p: object colour offset ~ U(-COLOUR, COLOUR) per channel on pixels in [-1, 1]")
    ap.add_argument("--vae-edge-weight", type=float, default=0.0,
                    help="vae, vae_ft: weight of the gradient-difference loss (components.edge_l1; session 17's "
                         "square corners; run 2: 0)")
    ap.add_argument("--vae-jitter", type=float, default=0.0,
                    help="vae, vae_ft: object colour offset ~ U(-J, J) per channel on pixels in [-1, 1] "
                         "(components.jitter_objects; session 17's off-palette colours; run 2: 0)")
    ap.add_argument("--stage2-lr", type=float, default=None,
                    help="stage2, stage2_turn: peak learning rate (default 5e-4; session 10's tone run: 2e-4)")
    ap.add_argument("--unet-channels", metavar="C0,C1,C2,C3",
                    help="stage1: block widths of a new stage-1 UNet instead of the config's (tiny: 16,16,32,32; "
                         "session 18 tried 32,32,64,64); stage1_centred, stage1_more and stage 2 (base UNet and "
                         "CAM) take the width of the UNet they start from")
    ap.add_argument("--shape-pair-p", type=float, default=0.0,
                    help="stage1_centred, stage2, stage2_turn: share of square and circle windows given a partner "
                         "of the other shape (shape_pair.py; sessions 18-19); needs --shape-pair-weight")
    ap.add_argument("--shape-pair-weight", type=float, default=0.0,
                    help="stage1_centred, stage2, stage2_turn: weight of the shape-pair loss (the x0 error of the "
                         "pair's difference)")
    ap.add_argument("--dir-pair-p", type=float, default=0.0,
                    help="stage1_centred: share of windows given a partner moving the opposite way "
                         "(shape_pair.py, kind direction; session 20); needs --dir-pair-weight")
    ap.add_argument("--dir-pair-weight", type=float, default=0.0,
                    help="stage1_centred: weight of the direction-pair loss")
    ap.add_argument("--dir-pair-t-from", type=int, default=500,
                    help="stage1_centred: the direction pairs' timesteps are uniform over [T, 999] (default 500)")
    ap.add_argument("--boundary-weight", type=float, default=0.0,
                    help="stage1_centred: add this to the loss weight of latent cells on the object's outline "
                         "(latents.boundary_cells; session 14's squares experiment)")
    ap.add_argument("--xattn-lr-mult", type=float, default=1.0,
                    help="stage1_centred: rate multiple of the UNet's spatial cross-attention layers")
    ap.add_argument("--steps", action="append", default=[], metavar="COMPONENT=N",
                    help="total step count of a component instead of STEPS (continuing a finished run: copy its "
                         "checkpoint into --out; the cosine schedule is stretched to N)")
    ap.add_argument("--device", default="cpu",
                    help="where the networks train: cpu (default; one thread per process) or cuda; data is rendered on "
                         "the CPU either way")
    ap.add_argument("--batch-mult", type=int, default=1,
                    help="multiply the batch of stage 1, stage1_more, stage 2 and the enhancer (a GPU has room for "
                         "4-8x at almost the same step time; learning rates are unchanged)")
    ap.add_argument("--ranks", type=int, default=1,
                    help="with --only: train that component data-parallel in this many one-thread processes (CPU: one "
                         "per core; gradients averaged, so the batch grows by this factor; see common.set_ranks)")
    ap.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--dist-port", type=int, default=0,
                    help="TCP port of the --ranks group on 127.0.0.1 (default 0: a free port)")
    ap.add_argument("--collect", action="store_true", help="only (re)write weights.pt from the finished parts")
    ap.add_argument("--collect-checkpoint", action="append", default=[], metavar="COMPONENT",
                    choices=sorted(K.CHECKPOINT_ROLES),
                    help="with --collect: take COMPONENT's EMA weights from its last checkpoint (ckpt_COMPONENT.pt, "
                         "the step is printed) instead of its finished file, to export and probe a run midway")
    ap.add_argument("--stop-at", action="append", default=[], metavar="COMPONENT=STEP",
                    help="stop a component at STEP with the schedule of the full step count (replays a run whose "
                         "wall-clock budget stopped it there; see losses.jsonl)")
    args = ap.parse_args(argv)
    def component_counts(items, flag):
        out = {}
        for item in items:
            name, sep, value = item.partition("=")
            if not sep or name not in STEPS or not value.isdigit():
                ap.error(f"{flag} {item!r}: expected COMPONENT=N with COMPONENT one of {', '.join(sorted(STEPS))}")
            out[name] = int(value)
        return out
    stop = component_counts(args.stop_at, "--stop-at")
    if args.batch_mult < 1:
        ap.error("--batch-mult must be >= 1")
    if args.vertical_p is not None and not 0.0 <= args.vertical_p <= 1.0:
        ap.error(f"--vertical-p must be in [0, 1], not {args.vertical_p}")
    if args.boundary_weight < 0:
        ap.error(f"--boundary-weight must be >= 0, not {args.boundary_weight}")
    if args.vertical_p_stage1 != -1.0 and not 0.0 <= args.vertical_p_stage1 <= 1.0:
        ap.error(f"--vertical-p-stage1 must be in [0, 1], not {args.vertical_p_stage1}")
    if not 0.0 <= args.tone_p <= 1.0:
        ap.error(f"--tone-p must be in [0, 1], not {args.tone_p}")
    if not (0.0 <= args.tone_gain < 1.0 and args.tone_offset >= 0.0):
        ap.error(f"--tone-gain must be in [0, 1) and --tone-offset >= 0, not {args.tone_gain}, {args.tone_offset}")
    if not 0.0 <= args.drift_p <= 1.0:
        ap.error(f"--drift-p must be in [0, 1], not {args.drift_p}")
    if not (args.drift_size >= 1.0 and args.drift_colour >= 0.0):
        ap.error(f"--drift-size must be >= 1 and --drift-colour >= 0, not {args.drift_size}, {args.drift_colour}")
    if not (args.vae_edge_weight >= 0.0 and 0.0 <= args.vae_jitter <= 1.0):
        ap.error(f"--vae-edge-weight must be >= 0 and --vae-jitter in [0, 1], not {args.vae_edge_weight}, "
                 f"{args.vae_jitter}")
    try:
        SP.check_options(args.shape_pair_p, args.shape_pair_weight, ("--shape-pair-p", "--shape-pair-weight"))
        SP.check_options(args.dir_pair_p, args.dir_pair_weight, ("--dir-pair-p", "--dir-pair-weight"))
        if not 0 <= args.dir_pair_t_from <= 999:
            raise ValueError(f"--dir-pair-t-from must be in [0, 999], not {args.dir_pair_t_from}")
    except ValueError as e:
        ap.error(str(e))
    unet_channels = None
    if args.unet_channels is not None:
        try:
            unet_channels = with_widths(get_net_config(C.NET_CONFIG).unet,
                                        [int(v) for v in args.unet_channels.split(",")]).block_out_channels
        except ValueError as e:     # int() of a non-number, or a width the config cannot build
            ap.error(f"--unet-channels {args.unet_channels!r}: {e}")
    if args.stage2_lr is not None and not args.stage2_lr > 0:
        ap.error(f"--stage2-lr must be > 0, not {args.stage2_lr}")
    if args.collect_checkpoint and not args.collect:
        ap.error("--collect-checkpoint needs --collect")
    if args.ranks < 1 or (args.ranks > 1 and not args.only):
        ap.error("--ranks N (N > 1) needs --only COMPONENT")
    os.makedirs(args.out, exist_ok=True)
    C.setup_torch(1)
    C.set_device(args.device)
    budget = args.budget_minutes * 60.0
    share = SHARE3 if args.recipe == 3 else SHARE
    steps = {k: max(1, int(v * args.steps_scale)) for k, v in (STEPS3 if args.recipe == 3 else STEPS).items()}
    steps.update(component_counts(args.steps, "--steps"))

    def train(name: str) -> None:
        extra = ({"merger_lr_mult": args.cam_lr_mult, "cam_init": args.cam_init, "base": args.stage2_base}
                 if name == "stage2" else {})
        if name in ("stage1", "stage1_more", "stage1_centred", "stage2", "stage2_turn"):
            extra["motion_weight"] = args.motion_loss
        if name == "enhancer":
            extra.update(loss=args.enhancer_loss, init=args.enhancer_init)
        if name in ("vae", "vae_ft"):
            extra.update(edge_weight=args.vae_edge_weight, jitter=args.vae_jitter)
        if name == "stage1" and unet_channels is not None:
            extra["channels"] = unet_channels
        if name == "stage1_centred":
            extra.update(text_lr_mult=args.text_lr_mult, xattn_lr_mult=args.xattn_lr_mult, terminal_p=args.terminal_p,
                         boundary_weight=args.boundary_weight, pair_p=args.shape_pair_p,
                         pair_weight=args.shape_pair_weight, dir_pair_p=args.dir_pair_p,
                         dir_pair_weight=args.dir_pair_weight, dir_pair_t_from=args.dir_pair_t_from)
        if name in ("stage1_centred", "stage2", "stage2_turn"):
            extra["vertical_p"] = args.vertical_p
        if name == "stage1_centred" and args.recipe == 3:
            extra["centred_from"] = "stage1"
            if args.vertical_p_stage1 != -1.0:
                extra["vertical_p"] = args.vertical_p_stage1
        if name in ("stage2", "stage2_turn"):
            extra.update(tone_p=args.tone_p, tone_gain=args.tone_gain, tone_offset=args.tone_offset,
                         drift_p=args.drift_p, drift_size=args.drift_size, drift_colour=args.drift_colour,
                         pair_p=args.shape_pair_p, pair_weight=args.shape_pair_weight)
            if args.stage2_lr is not None:
                extra["lr"] = args.stage2_lr
        if name == "stage2_turn":
            extra.update(merger_lr_mult=args.cam_lr_mult, turn_p=args.turn_p, terminal_p=args.terminal_p,
                         turn_terminal_p=args.turn_terminal_p, turn_base_unet=args.turn_base_unet)
            if args.recipe == 3:
                extra.update(fresh=True, base="stage1_centred", cam_init=args.cam_init)
        if name in ("stage1", "stage1_more", "stage1_centred", "stage2", "stage2_turn", "enhancer") and args.batch_mult > 1:
            fn = {"stage1_more": S.train_stage1, "stage1_centred": S.train_stage1,
                  "stage2_turn": S.train_stage2}.get(name) or _trainer(name)
            extra["batch"] = inspect.signature(fn).parameters["batch"].default * args.batch_mult
        _trainer(name)(args.out, steps=steps[name], budget_s=share[name] * budget, stop_at=stop.get(name), **extra)

    if args.latents_part:
        k, n = (int(v) for v in args.latents_part.split("/"))
        _encode_latents(args, k, n)
        return 0
    if args.only:
        others = []
        if args.ranks > 1 and args.rank == 0:
            if args.dist_port == 0:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    args.dist_port = s.getsockname()[1]
            argv_now = sys.argv[1:] if argv is None else list(argv)
            others = [subprocess.Popen([sys.executable, "-m", "models.train.all", *argv_now, f"--rank={r}",
                                        f"--dist-port={args.dist_port}"],
                                       stdout=open(os.path.join(args.out, f"{args.only}_rank{r}_log.txt"), "a"),
                                       stderr=subprocess.STDOUT) for r in range(1, args.ranks)]
        try:
            C.set_ranks(args.rank, args.ranks, args.dist_port)
            train(args.only)
        except BaseException:
            for p in others:      # the other ranks would wait for this one until the group's timeout
                p.kill()
            raise
        for r, p in enumerate(others, 1):
            _wait(p, f"{args.only} rank {r}")
        return 0
    t0 = time.time()
    if not args.collect and args.recipe == 3:
        train("vae")
        b = _spawn(args, ["--latents-part", "1/2"], "latents_log.txt")
        _encode_latents(args, 0, 2)
        _wait(b, "latents 1/2")
        chain = _Chain(args, [(["--only", "vae_ft"], "vae_ft_log.txt")]
                       + ([] if args.no_enhancer else [(["--only", "enhancer"], "enhancer_log.txt")]))
        chain.start()
        train("stage1")
        train("stage1_centred")
        chain.finish()
        ranks = 1 if args.device == "cuda" else 2
        _wait(_spawn(args, ["--only", "stage2_turn", "--ranks", str(ranks)], "stage2_turn_log.txt"), "stage2_turn")
    elif not args.collect:
        train("vae")
        b = _spawn(args, ["--latents-part", "1/2"], "latents_log.txt")
        _encode_latents(args, 0, 2)
        _wait(b, "latents 1/2")
        b = _spawn(args, ["--only", "vae_ft"], "vae_ft_log.txt")
        train("stage1")
        _wait(b, "vae_ft")
        if args.stage2_base == "stage1_more":     # stage 2 starts from stage1_more's UNet: it waits for it
            train("stage1_more")
            b = _spawn(args, ["--only", "stage2"], "stage2_log.txt")
        else:
            b = _spawn(args, ["--only", "stage2"], "stage2_log.txt")
            train("stage1_more")
        train("stage1_centred")
        if not args.no_enhancer:
            train("enhancer")
        _wait(b, "stage 2")
    try:
        weights = K.collect_weights(args.out, args.collect_checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"--collect: {e}")
    if "enhancer_unet" not in weights:
        torch.manual_seed(0)
        weights["enhancer_text_encoder"] = K.build_aux_model("openclip_text", C.NET_CONFIG).state_dict()
        weights["enhancer_unet"] = K.build_aux_model("vid2vid_unet", C.NET_CONFIG).state_dict()
        print("enhancer: random weights (seed 0)", flush=True)
    torch.save(weights, os.path.join(args.out, "weights.pt"))
    print(f"wrote {os.path.join(args.out, 'weights.pt')} after {(time.time() - t0) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
