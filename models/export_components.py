"""The ten exported components: I/O specs, construction (random or official weights), TorchScript, op checks.

Roles and modules (latents are [B, 4, F, h, w] with h = H/8, w = W/8; D = text width):

| role | module | forward |
|---|---|---|
| text_encoder | ``CLIPTextEncoder`` | input_ids int64 [B,77] -> last_hidden_state [B,77,D] |
| apm_image_encoder | ``APMImageEncoder`` | image [B,3,H,W] in [-1,1] -> tokens [B,16,D] |
| vae_encoder / enhancer_vae_encoder | ``VAEEncoder`` | video [B,3,F,H,W] -> (mean, std) [B,4,F,h,w] (x 0.18215) |
| vae_decoder / enhancer_vae_decoder | ``VAEDecoder`` | latents [B,4,F,h,w] -> video [B,3,F,8h,8w] |
| unet_stage1 | ``UNet3DConditionModel`` | sample [B,4,F,h,w], timestep [B], encoder_hidden_states [B,77,D] -> eps |
| unet_stage2 | ``Stage2UNet`` | sample [B,4,16,h,w], timestep [B], encoder_hidden_states [B,93,D], cond_frames [B,3,8,H,W] -> eps |
| enhancer_text_encoder | ``OpenCLIPTextEncoder`` | input_ids int64 [B,77] -> [B,77,D3] |
| enhancer_unet | ``Vid2VidUNet`` | sample [B,4,F,h,w], timestep [B], encoder_hidden_states [B,77,D3] -> v |

Official weights are loaded strictly through the colleagues' key mappings (``state_dict_keys_unet``,
``state_dict_keys_aux``); see :func:`build_from_checkpoints` for the expected file layout.
"""
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from . import manifest as mf
from .apm import APMImageEncoder
from .configs_aux import build_aux_model, get_config as get_aux_config
from .configs_unet import get_config as get_net_config
from .stage2 import Stage2UNet
from .state_dict_keys_aux import (clip_text_from_hf, openclip_text_from_open_clip, vae_decoder_subset,
                                  vae_encoder_subset, vae_from_diffusers, vae_from_ldm, vid2vid_unet_from_modelscope)
from .unet3d import UNet3DConditionModel

HERE = os.path.dirname(os.path.abspath(__file__))
#: Operator names (``name.overload``) registered in torch/libtorch 1.13 (``torch._C._jit_get_all_schemas()``).
LIBTORCH_113_OPS_FILE = os.path.join(HERE, "libtorch_1_13_ops.txt")

#: Per config: stage-1/2 frame side, stage-3 content side, stage-3 canvas [H, W] (spec §1.8; tiny: 2x upscale).
RESOLUTIONS = {"full": (256, 720, (720, 1280)), "tiny": (64, 128, (128, 128))}


@dataclass
class TensorSpec:
    """One named input/output: symbolic shape and dtype (``fixed_dtype``: not cast with the model dtype)."""

    name: str
    shape: List[mf.Dim]
    dtype: str = "float32"
    fixed_dtype: bool = False

    def to_json(self, model_dtype: str) -> dict:
        floating = self.dtype.startswith("float") or self.dtype == "bfloat16"
        dtype = model_dtype if floating and not self.fixed_dtype else self.dtype
        out = {"name": self.name, "shape": list(self.shape), "dtype": dtype}
        if self.fixed_dtype:
            out["fixed_dtype"] = True
        return out


@dataclass
class ComponentSpec:
    """I/O contract of one role plus the dims it is checked at (``example_dims``)."""

    role: str
    module_class: str
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    example_dims: Dict[str, int] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return f"{self.role}.pt"


def component_specs(config: str) -> List[ComponentSpec]:
    """The ten specs for ``config`` ('full' | 'tiny'); widths come from the colleagues' configs."""
    net = get_net_config(config)
    d = net.unet.cross_attention_dim
    d3 = get_aux_config("openclip_text", config).width
    n_img = net.resampler.num_tokens
    ctx_len = net.unet.text_tokens + net.unet.image_tokens
    size12, size3, _ = RESOLUTIONS[config]
    lat12, lat3 = size12 // 8, size3 // 8
    small = config == "tiny"
    T = TensorSpec
    ids = [T("input_ids", ["B", 77], "int64")]
    lat = ["B", 4, "F", "h", "w"]
    video = ["B", 3, "F", "H", "W"]
    t = T("timestep", ["B"], "float32", fixed_dtype=True)

    def vae(prefix: str, size: int) -> List[ComponentSpec]:
        frames = 2 if small else 1
        return [ComponentSpec(f"{prefix}vae_encoder", "VAEEncoder", [T("video", video)],
                              [T("mean", ["B", 4, "F", "H/8", "W/8"]), T("std", ["B", 4, "F", "H/8", "W/8"])],
                              {"B": 1, "F": frames, "H": size, "W": size}),
                ComponentSpec(f"{prefix}vae_decoder", "VAEDecoder", [T("latents", lat)],
                              [T("video", ["B", 3, "F", "8*h", "8*w"])], {"B": 1, "F": frames, "h": size // 8,
                                                                          "w": size // 8})]

    return [
        ComponentSpec("text_encoder", "CLIPTextEncoder", ids, [T("last_hidden_state", ["B", 77, d])], {"B": 2}),
        ComponentSpec("apm_image_encoder", "APMImageEncoder", [T("image", ["B", 3, "H", "W"])],
                      [T("tokens", ["B", n_img, d])], {"B": 2, "H": size12, "W": size12}),
        *vae("", size12),
        ComponentSpec("unet_stage1", "UNet3DConditionModel",
                      [T("sample", lat), t, T("encoder_hidden_states", ["B", 77, d])], [T("eps", lat)],
                      {"B": 2, "F": 16, "h": lat12, "w": lat12}),
        ComponentSpec("unet_stage2", "Stage2UNet",
                      [T("sample", ["B", 4, 16, "h", "w"]), t, T("encoder_hidden_states", ["B", ctx_len, d]),
                       T("cond_frames", ["B", 3, 8, "8*h", "8*w"])], [T("eps", ["B", 4, 16, "h", "w"])],
                      {"B": 2, "h": lat12, "w": lat12}),
        ComponentSpec("enhancer_text_encoder", "OpenCLIPTextEncoder", ids, [T("last_hidden_state", ["B", 77, d3])],
                      {"B": 2}),
        ComponentSpec("enhancer_unet", "Vid2VidUNet",
                      [T("sample", lat), t, T("encoder_hidden_states", ["B", 77, d3])], [T("v", lat)],
                      {"B": 2, "F": 4 if small else 2, "h": lat3 if small else 16, "w": lat3 if small else 16}),
        *vae("enhancer_", size3 if small else 128),
    ]


def _perturb_zero_weights(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give zero-initialised weights (CAM merger ``proj_out``, APM ``alpha``) small random values, so that every
    input of a random tiny model reaches its output (biases and norms stay as initialised)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not name.endswith("bias") and bool((p == 0).all()):
                p.copy_(torch.randn(p.shape, generator=generator) * (1.0 if name.endswith("alpha") else 0.05))


def build_random(config: str, seed: int) -> Dict[str, Callable[[], torch.nn.Module]]:
    """All ten modules with random weights (torch seed ``seed``; construction order fixed), as factories."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    net = get_net_config(config)
    vae = build_aux_model("vae", config)
    enh_vae = build_aux_model("vae", config)
    stage2 = Stage2UNet(net)
    apm = APMImageEncoder(net.clip, net.resampler)
    for m in (stage2, apm):
        _perturb_zero_weights(m, gen)
    modules = {"text_encoder": build_aux_model("clip_text", config), "apm_image_encoder": apm,
               "vae_encoder": vae.video_encoder(), "vae_decoder": vae.video_decoder(),
               "unet_stage1": UNet3DConditionModel(net.unet), "unet_stage2": stage2,
               "enhancer_text_encoder": build_aux_model("openclip_text", config),
               "enhancer_unet": build_aux_model("vid2vid_unet", config),
               "enhancer_vae_encoder": enh_vae.video_encoder(), "enhancer_vae_decoder": enh_vae.video_decoder()}
    return {role: (lambda m=m: m) for role, m in modules.items()}


def load_weights(path: str) -> Mapping[str, torch.Tensor]:
    """A state dict from ``.safetensors`` (needs the safetensors package) or a torch pickle (``.bin/.pt/.pth/.ckpt``).

    Pickles are loaded on CPU, memory-mapped where torch supports it (>= 2.1), and with ``weights_only`` where
    available; a Lightning/ldm checkpoint is returned whole (the key mappings unwrap ``state_dict``).
    """
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file  # optional dependency, only for .safetensors inputs
        return load_file(path, device="cpu")
    kwargs = {"map_location": "cpu"}
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 1):
        return torch.load(path, **kwargs)
    try:
        return torch.load(path, mmap=True, weights_only=True, **kwargs)
    except Exception as err:  # e.g. a Lightning checkpoint that pickles callbacks: retry as a trusted full pickle
        print(f"note: {os.path.basename(path)} is not a plain weights file ({type(err).__name__}); loading it as a "
              "full pickle (only do this for files you trust)", file=sys.stderr)
        return torch.load(path, mmap=True, weights_only=False, **kwargs)


def find_file(folder: str, candidates: Sequence[str]) -> str:
    """First existing ``folder/candidate``; FileNotFoundError naming all candidates otherwise."""
    for name in candidates:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"none of {list(candidates)} found in {folder}")


def _weights_candidates(stem: str) -> List[str]:
    return [f"{stem}.safetensors", f"{stem}.fp16.safetensors", f"{stem}.bin", f"{stem}.fp16.bin"]


def _strict(module: torch.nn.Module, sd: Mapping[str, torch.Tensor], what: str) -> torch.nn.Module:
    try:
        module.load_state_dict(dict(sd), strict=True)
    except RuntimeError as err:
        raise RuntimeError(f"{what}: checkpoint does not match the module ({err})") from err
    return module


def build_from_checkpoints(config: str, streamingt2v_ckpt: str, modelscope_dir: str,
                           vid2vid_dir: str) -> Dict[str, Callable[[], torch.nn.Module]]:
    """One factory per role that builds the module from the official files (spec §5), strictly, fp32 on CPU.

    Factories run one at a time so that only one big network (plus its source file) is in memory at once.

    * ``streamingt2v_ckpt``: ``streaming_t2v.ckpt`` (Lightning; ``state_dict`` with ``base_model.*``, ``unet.*``,
      ``image_encoder.model.visual.*``, ``resampler.*``) -> unet_stage2, apm_image_encoder.
    * ``modelscope_dir``: ``damo-vilab/text-to-video-ms-1.7b`` (diffusers): ``unet/``, ``text_encoder/``, ``vae/``
      -> unet_stage1, text_encoder, vae_encoder, vae_decoder.
    * ``vid2vid_dir``: ``damo/Video-to-Video``: ``non_ema_0035000.pth``, ``open_clip_pytorch_model.bin``,
      ``v2-1_512-ema-pruned.ckpt`` -> enhancer_unet, enhancer_text_encoder, enhancer_vae_*.
    """
    net = get_net_config(config)
    for folder in (modelscope_dir, vid2vid_dir):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"not a directory: {folder}")
    if not os.path.isfile(streamingt2v_ckpt):
        raise FileNotFoundError(f"StreamingT2V checkpoint not found: {streamingt2v_ckpt}")

    cache: Dict[str, Mapping[str, torch.Tensor]] = {}

    def st2v_state_dict() -> Mapping[str, torch.Tensor]:
        """The checkpoint is read once for apm_image_encoder and unet_stage2 (released after unet_stage2)."""
        if "sd" not in cache:
            ckpt = load_weights(streamingt2v_ckpt)
            cache["sd"] = ckpt["state_dict"] if "state_dict" in ckpt else ckpt
        return cache["sd"]

    def stage2() -> torch.nn.Module:
        m = Stage2UNet(net, cam_from_base=False)
        m.load_streaming_t2v_state_dict(st2v_state_dict(), strict=True)
        cache.clear()
        return m

    def apm() -> torch.nn.Module:
        m = APMImageEncoder(net.clip, net.resampler)
        m.load_streaming_t2v_state_dict(st2v_state_dict(), strict=True)
        return m

    def unet1() -> torch.nn.Module:
        m = UNet3DConditionModel(net.unet)
        path = find_file(os.path.join(modelscope_dir, "unet"), _weights_candidates("diffusion_pytorch_model"))
        m.load_diffusers_state_dict(load_weights(path), strict=True)
        return m

    def text() -> torch.nn.Module:
        path = find_file(os.path.join(modelscope_dir, "text_encoder"),
                         ["model.safetensors", "model.fp16.safetensors", "pytorch_model.bin", "pytorch_model.fp16.bin"])
        return _strict(build_aux_model("clip_text", config), clip_text_from_hf(load_weights(path)), "text_encoder")

    def modelscope_vae(part: str) -> Callable[[], torch.nn.Module]:
        def build() -> torch.nn.Module:
            path = find_file(os.path.join(modelscope_dir, "vae"), _weights_candidates("diffusion_pytorch_model"))
            vae = _strict(build_aux_model("vae", config), vae_from_diffusers(load_weights(path)), "vae")
            return vae.video_encoder() if part == "encoder" else vae.video_decoder()
        return build

    def enhancer_unet() -> torch.nn.Module:
        sd = vid2vid_unet_from_modelscope(load_weights(find_file(vid2vid_dir, ["non_ema_0035000.pth"])))
        return _strict(build_aux_model("vid2vid_unet", config), sd, "enhancer_unet")

    def enhancer_text() -> torch.nn.Module:
        cfg = get_aux_config("openclip_text", config)
        sd = openclip_text_from_open_clip(load_weights(find_file(vid2vid_dir, ["open_clip_pytorch_model.bin"])),
                                          layers_used=cfg.layers - 1 if cfg.penultimate else cfg.layers)
        return _strict(build_aux_model("openclip_text", config), sd, "enhancer_text_encoder")

    def enhancer_vae(part: str) -> Callable[[], torch.nn.Module]:
        def build() -> torch.nn.Module:
            levels = len(get_aux_config("vae", config).block_out_channels)
            sd = vae_from_ldm(load_weights(find_file(vid2vid_dir, ["v2-1_512-ema-pruned.ckpt"])), num_levels=levels)
            vae = build_aux_model("vae", config)
            if part == "encoder":
                return _strict(vae.video_encoder(), vae_encoder_subset(sd), "enhancer_vae_encoder")
            return _strict(vae.video_decoder(), vae_decoder_subset(sd), "enhancer_vae_decoder")
        return build

    return {"text_encoder": text, "apm_image_encoder": apm, "vae_encoder": modelscope_vae("encoder"),
            "vae_decoder": modelscope_vae("decoder"), "unet_stage1": unet1, "unet_stage2": stage2,
            "enhancer_text_encoder": enhancer_text, "enhancer_unet": enhancer_unet,
            "enhancer_vae_encoder": enhancer_vae("encoder"), "enhancer_vae_decoder": enhancer_vae("decoder")}


def example_inputs(spec: ComponentSpec, dims: Mapping[str, int], dtype: torch.dtype, device: str,
                   seed: int = 0, vocab: int = 1000) -> List[torch.Tensor]:
    """Deterministic inputs of the spec's shapes: ids in [0, vocab), images/videos in [-1, 1], timesteps in [1, 999)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for ts in spec.inputs:
        shape = mf.eval_shape(ts.shape, dims)
        if ts.dtype == "int64":
            x = torch.randint(0, vocab, shape, generator=g, dtype=torch.int64)
        elif ts.name == "timestep":
            x = torch.rand(shape, generator=g) * 998.0 + 1.0
        elif ts.name in ("image", "video", "cond_frames"):
            x = (torch.rand(shape, generator=g) * 2.0 - 1.0).to(dtype)
        else:
            x = torch.randn(shape, generator=g).to(dtype)
        out.append(x.to(device))
    return out


def as_tuple(out) -> Tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def aten_ops(scripted: torch.jit.ScriptModule) -> List[str]:
    """Sorted ``aten::name.overload`` of every operator in the inlined forward graph (including nested blocks)."""
    ops = set()
    graph = scripted.inlined_graph          # keep a reference: its blocks die with it
    stack = [graph]
    while stack:
        item = stack.pop()
        for node in item.nodes():
            stack.extend(node.blocks())
            if node.kind().startswith("aten::"):
                schema = node.schema()
                ops.add(node.kind() if schema == "(no schema)" else schema.split("(")[0])
    return sorted(ops)


def libtorch_113_ops() -> frozenset:
    """The committed list of operators present in libtorch 1.13."""
    with open(LIBTORCH_113_OPS_FILE, encoding="utf-8") as f:
        return frozenset(line.strip() for line in f if line.strip() and not line.startswith("#"))


def ops_missing_in_libtorch_113(ops: Sequence[str]) -> List[str]:
    """Operators of ``ops`` that libtorch 1.13 does not have (the exported file would not load there)."""
    known = libtorch_113_ops()
    return [op for op in ops if op not in known]


def write_libtorch_ops_file(path: str = LIBTORCH_113_OPS_FILE) -> int:
    """Regenerate the operator list from the running torch (must be 1.13); returns the count."""
    names = sorted({s.name + (f".{s.overload_name}" if s.overload_name else "")
                    for s in torch._C._jit_get_all_schemas()})
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# operators registered in torch {torch.__version__} (torch._C._jit_get_all_schemas); "
                "regenerate with: /usr/bin/python3 -m models.export --write-op-list\n")
        f.write("\n".join(names) + "\n")
    return len(names)


def script_module(module: torch.nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of an eval-mode module (no freeze / optimize_for_inference: those are done at load)."""
    return torch.jit.script(module.eval())


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

