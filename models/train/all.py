"""Train every component of the embedded default model, in order, then write ``<out>/weights.pt``
({role: state_dict}) for ``python3 -m models.export --config tiny --weights <out>/weights.pt --out models/default``.

    /usr/bin/python3 -m models.train.all --out /tmp/st2v-train [--budget-minutes 60]

Order: VAE -> stage 1 [text encoder + UNet] -> stage 2 [CAM, APM, base UNet from stage 1] in this process and,
beside it in a second 1-thread process, ``stage1_more`` (more stage-1 UNet steps, text encoder frozen); optionally
the stage-3 enhancer (``--enhancer``; otherwise its weights stay random, seed 0).
Step counts are fixed, so a run is reproducible (same seeds, same steps, same single-thread CPU kernels); the
wall-clock budget (shared out as 12 % VAE, 27 % stage 1, 45 % stage 2, 40 % stage1_more in parallel) stops a
component early on a slow machine, which is logged ("stopped by wall-clock budget" at step N); ``--stop-at
COMPONENT=N`` replays such a run exactly. Re-running the command resumes from the checkpoints.
Losses are appended to ``<out>/losses.jsonl``.
"""
import argparse
import os
import subprocess
import sys
import time

import torch

from . import common as C
from . import components as K

STEPS = {"vae": 3500, "stage1": 1600, "stage2": 1400, "enhancer": 600, "stage1_more": 1200}
SHARE = {"vae": 0.12, "stage1": 0.27, "stage2": 0.45, "enhancer": 0.30, "stage1_more": 0.40}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-minutes", type=float, default=60.0)
    ap.add_argument("--only", choices=sorted(STEPS), help="train one component (used for the parallel stage1_more)")
    ap.add_argument("--steps-scale", type=float, default=1.0, help="multiply all step counts (smoke tests)")
    ap.add_argument("--enhancer", action="store_true", help="also train the stage-3 enhancer (after stage 2; "
                    "off by default: on the 2-core machine its time went to stage 1, the enhancer stays random)")
    ap.add_argument("--no-parallel", action="store_true", help="do not run stage1_more beside stage 2")
    ap.add_argument("--collect", action="store_true", help="only (re)write weights.pt from the finished parts")
    ap.add_argument("--stop-at", action="append", default=[], metavar="COMPONENT=STEP",
                    help="stop a component at STEP with the schedule of the full step count (replays a run whose "
                         "wall-clock budget stopped it there; see losses.jsonl)")
    args = ap.parse_args(argv)
    stop = {k: int(v) for k, v in (item.split("=") for item in args.stop_at)}
    os.makedirs(args.out, exist_ok=True)
    C.setup_torch(1)
    budget = args.budget_minutes * 60.0
    steps = {k: max(1, int(v * args.steps_scale)) for k, v in STEPS.items()}
    fns = {"vae": K.train_vae, "stage1": K.train_stage1, "stage2": K.train_stage2, "enhancer": K.train_enhancer,
           "stage1_more": K.train_stage1_more}
    if args.only:
        fns[args.only](args.out, steps=steps[args.only], budget_s=SHARE[args.only] * budget,
                       stop_at=stop.get(args.only))
        return 0
    t0 = time.time()
    if not args.collect:
        K.train_vae(args.out, steps=steps["vae"], budget_s=SHARE["vae"] * budget, stop_at=stop.get("vae"))
        K.train_stage1(args.out, steps=steps["stage1"], budget_s=SHARE["stage1"] * budget, stop_at=stop.get("stage1"))
        par = None
        if not args.no_parallel:      # more stage-1 training on the second core while stage 2 trains
            cmd = [sys.executable, "-m", "models.train.all", "--out", args.out, "--only", "stage1_more",
                   "--budget-minutes", str(args.budget_minutes), "--steps-scale", str(args.steps_scale)]
            cmd += [f"--stop-at={k}={v}" for k, v in stop.items()]
            par = subprocess.Popen(cmd, stdout=open(os.path.join(args.out, "stage1_more_log.txt"), "a"),
                                   stderr=subprocess.STDOUT)
        K.train_stage2(args.out, steps=steps["stage2"], budget_s=SHARE["stage2"] * budget, stop_at=stop.get("stage2"))
        if par is not None and par.wait() != 0:
            print("stage1_more failed; see stage1_more_log.txt", flush=True)
        if args.enhancer:
            K.train_enhancer(args.out, steps=steps["enhancer"], budget_s=SHARE["enhancer"] * budget,
                             stop_at=stop.get("enhancer"))
    weights = K.collect_weights(args.out)
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
