"""FLOPs of one network call at the pipeline's shapes, counted by torch.utils.flop_counter.FlopCounterMode.

    python3 bench/py/unet_flops.py [--config full|tiny] [--frames3 24] [--out flops.json] [--dry-run]

Counts (one call each, CFG batch B = 2 as the pipeline runs them; a CFG split into two B = 1 calls costs the same):

* ``unet_stage1``: sample [2, 4, 16, h, w] (h = w = side/8 of stage 1/2, 256 -> 32)
* ``unet_stage2``: the same plus the CAM's 8 conditioning frames [2, 3, 8, side, side], 93 context tokens
* ``enhancer_unet``: sample [2, 4, frames3, H/8, W/8] on the stage-3 canvas (full: 720x1280 -> 90x160, 24 frames)
* ``vae_decoder`` / ``enhancer_vae_encoder`` / ``enhancer_vae_decoder``: per frame (B = 1, F = 1)

The networks are built on the ``meta`` device (no weights, no compute), so the full sizes take seconds on any
machine; where an op has no meta kernel (torch 1.13: repeat_interleave) they run on the GPU, else the CPU. FLOPs do not depend on weights or dtype. A multiply-add counts as 2 FLOPs (FlopCounterMode's convention).
FlopCounterMode counts matmuls, convolutions and attention kernels, not elementwise ops (norms, activations), so
these figures are the "useful" FLOPs that achieved-TFLOP/s figures are usually quoted against.
Needs torch >= 2.1 (FlopCounterMode); on older torch it prints so and exits 3 (``--dry-run`` runs the meta forwards
without counting, e.g. to check the shapes with torch 1.13). Prints one JSON object (also written to ``--out``).
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))

import torch  # noqa: E402

from models.configs_aux import build_aux_model, get_config as get_aux_config, meta_device  # noqa: E402
from models.configs_unet import get_config as get_net_config  # noqa: E402
from models.export_components import RESOLUTIONS  # noqa: E402
from models.stage2 import Stage2UNet  # noqa: E402
from models.unet3d import UNet3DConditionModel  # noqa: E402


#: Where the forwards run: "meta" (no weights, no compute) unless an op has no meta kernel on this torch, then
#: the GPU (or the CPU) with real random weights.
DEVICE = ["meta"]


def run_once(make, inputs, counting):
    """Builds the module on DEVICE[0] and runs one forward; returns (flops or None, parameters)."""
    if DEVICE[0] == "meta":
        with meta_device():
            module = make().eval()
    else:
        module = make().eval()
    module.to(DEVICE[0])
    with torch.no_grad():
        args = inputs()
        if counting:
            from torch.utils.flop_counter import FlopCounterMode
            counter = FlopCounterMode(display=False)
            with counter:
                module(*args)
            flops = int(counter.get_total_flops())
        else:
            module(*args)
            flops = None
    return flops, sum(p.numel() for p in module.parameters())


def torch_version() -> tuple:
    return tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])


def device_info() -> dict:
    info = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, multiprocessors=props.multi_processor_count,
                    memory_bytes=props.total_memory, capability=f"{props.major}.{props.minor}")
    return info


def cases(config: str, frames3: int):
    """(name, module factory, input factory, description) for each counted call."""
    net = get_net_config(config)
    d = net.unet.cross_attention_dim
    d3 = get_aux_config("openclip_text", config).width
    ctx2 = net.unet.text_tokens + net.unet.image_tokens
    side12, _, (canvas_h, canvas_w) = RESOLUTIONS[config]
    lat12, lat_h, lat_w = side12 // 8, canvas_h // 8, canvas_w // 8

    def t(*shape):
        return torch.randn(shape, device=DEVICE[0])

    def vae(kind):
        v = build_aux_model("vae", config)
        return v.video_decoder() if kind == "decoder" else v.video_encoder()

    return [
        ("unet_stage1", lambda: UNet3DConditionModel(net.unet),
         lambda: (t(2, 4, 16, lat12, lat12), t(2), t(2, 77, d)), f"B=2, 16 frames, {lat12}x{lat12} latents"),
        ("unet_stage2", lambda: Stage2UNet(net),
         lambda: (t(2, 4, 16, lat12, lat12), t(2), t(2, ctx2, d), t(2, 3, 8, side12, side12)),
         f"B=2, 16 frames, {lat12}x{lat12} latents, 8 CAM frames {side12}x{side12}"),
        ("enhancer_unet", lambda: build_aux_model("vid2vid_unet", config),
         lambda: (t(2, 4, frames3, lat_h, lat_w), t(2), t(2, 77, d3)),
         f"B=2, {frames3} frames, {lat_h}x{lat_w} latents ({canvas_w}x{canvas_h})"),
        ("vae_decoder", lambda: vae("decoder"), lambda: (t(1, 4, 1, lat12, lat12),), f"1 frame {side12}x{side12}"),
        ("enhancer_vae_encoder", lambda: vae("encoder"), lambda: (t(1, 3, 1, canvas_h, canvas_w),),
         f"1 frame {canvas_w}x{canvas_h}"),
        ("enhancer_vae_decoder", lambda: vae("decoder"), lambda: (t(1, 4, 1, lat_h, lat_w),),
         f"1 frame {canvas_w}x{canvas_h}"),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(RESOLUTIONS), default="full")
    parser.add_argument("--frames3", type=int, default=24, help="latent frames per stage-3 chunk (manifest default)")
    parser.add_argument("--only", help="comma-separated subset of the calls")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--dry-run", action="store_true", help="run the meta forwards without counting (any torch)")
    args = parser.parse_args(argv)
    counting = not args.dry_run
    if counting and torch_version() < (2, 1):
        print(f"unet_flops.py needs torch >= 2.1 (torch.utils.flop_counter.FlopCounterMode); this is torch "
              f"{torch.__version__} ({sys.executable}). Use --dry-run to check the shapes only.", file=sys.stderr)
        return 3
    only = set(args.only.split(",")) if args.only else None
    result = {"config": args.config, "flops_per_call": {}, "shapes": {}, "parameters": {},
              "counted_by": "torch.utils.flop_counter.FlopCounterMode" if counting else None,
              "device": device_info()}
    for name, make, inputs, shapes in cases(args.config, args.frames3):
        if only is not None and name not in only:
            continue
        t0 = time.time()
        try:
            flops, params = run_once(make, inputs, counting)
        except (RuntimeError, NotImplementedError) as err:
            if DEVICE[0] != "meta":
                raise
            DEVICE[0] = "cuda" if torch.cuda.is_available() else "cpu"
            print(f"note: {name} does not run on the meta device ({str(err).splitlines()[0]}); counting on "
                  f"{DEVICE[0]} with random weights instead", file=sys.stderr)
            flops, params = run_once(make, inputs, counting)
        result["flops_per_call"][name] = flops
        result["shapes"][name] = shapes
        result["parameters"][name] = params
        result["ran_on"] = DEVICE[0]
        tf = "-" if flops is None else f"{flops / 1e12:.3f} TFLOP"
        print(f"{name}: {tf} per call ({shapes}), {result['parameters'][name]:,} parameters, "
              f"{time.time() - t0:.1f} s", file=sys.stderr)
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
