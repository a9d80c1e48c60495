"""``manifest.json`` of an exported model directory: constants, defaults, scheduler configs, hashing, checks.

A model directory written by ``python3 -m models.export`` holds one TorchScript file per component, the CLIP
BPE tokenizer files and ``manifest.json``::

    {
      "format": "streamingt2v-model-directory", "format_version": 1, "name": "tiny",
      "components": [ {"role": "unet_stage1", "file": "unet_stage1.pt", "dtype": "float32",
                       "inputs":  [{"name": "sample", "shape": ["B", 4, "F", "h", "w"], "dtype": "float32"}, ...],
                       "outputs": [{"name": "eps", "shape": ["B", 4, "F", "h", "w"], "dtype": "float32"}],
                       "example_dims": {"B": 2, "F": 16, "h": 8, "w": 8}, "parameters": 1121012,
                       "aten_ops": ["aten::add.Tensor", ...]}, ... ],
      "tokenizers": {"text_encoder": {"file": "tokenizer.json", "config_file": "tokenizer_config.json",
                                      "max_length": 77, "bos_id": ..., "eos_id": ..., "pad_id": 0}, ...},
      "schedulers": {"stage1": {"type": "dpm_solver_multistep", "config": {<diffusers DDIM config>}},
                     "stage2": {"type": "ddim", "config": {...}},
                     "stage3": {"type": "logsnr_cosine_interp", "config": {...}}},
      "defaults": {"fps": 8, "latent_scale": 0.18215, "stage1": {...}, "stage2": {...}, "stage3": {...}},
      "sources": [{"component": ..., "source": ..., "license": ...}],
      "files": {"unet_stage1.pt": {"sha256": "...", "bytes": 4567}, ...}
    }

Shapes are lists of ints and symbolic dims. A symbolic dim is a name (``B``, ``F``, ``H``, ``W``, ``h``, ``w``),
``name/k`` or ``k*name`` (``H/8``, ``8*h``); :func:`eval_dim` resolves it against ``example_dims`` or any
other binding. ``H``/``W`` are pixel sizes, ``h``/``w`` latent sizes (= H/8, W/8).

The official constants (spec §1.4–§1.9, §9) live here; the TypeScript reader is ``lib/models/manifest.ts``.
"""
import hashlib
import json
import os
import re
from typing import Dict, List, Mapping, Optional, Sequence, Union

FORMAT = "streamingt2v-model-directory"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

ROLES = ("text_encoder", "apm_image_encoder", "vae_encoder", "vae_decoder", "unet_stage1", "unet_stage2",
         "enhancer_text_encoder", "enhancer_unet", "enhancer_vae_encoder", "enhancer_vae_decoder")

LATENT_SCALE = 0.18215
FPS = 8

#: ModelScope ``damo-vilab/text-to-video-ms-1.7b`` ``scheduler/scheduler_config.json`` (spec §1.6). Stage 2 runs it
#: as DDIM (leading spacing, offset 1); stage 1 runs ``DPMSolverMultistepScheduler.from_config`` of the same object.
MODELSCOPE_DDIM_CONFIG = {
    "_class_name": "DDIMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

#: MS-Vid2Vid-XL ``noise_schedule('logsnr_cosine_interp', n=1000, zero_terminal_snr=True, scale_min=2, scale_max=4)``
#: with v-prediction (spec §1.9).
VID2VID_SCHEDULE_CONFIG = {"num_timesteps": 1000, "scale_min": 2.0, "scale_max": 4.0, "zero_terminal_snr": True,
                           "prediction_type": "v"}

Dim = Union[int, str]
_DIM = re.compile(r"^(?:(\d+)\*)?([A-Za-z_]\w*)(?:/(\d+))?$")


def eval_dim(dim: Dim, dims: Mapping[str, int]) -> int:
    """Resolve one symbolic dim: ``7`` -> 7, ``"B"`` -> dims["B"], ``"H/8"`` -> dims["H"] // 8, ``"8*h"`` -> 8·h."""
    if isinstance(dim, int):
        return dim
    m = _DIM.match(dim)
    if m is None or (m.group(1) and m.group(3)):
        raise ValueError(f"bad symbolic dim {dim!r}")
    value = dims[m.group(2)]
    if m.group(1):
        return int(m.group(1)) * value
    if m.group(3):
        k = int(m.group(3))
        if value % k:
            raise ValueError(f"{dim}: {m.group(2)}={value} is not a multiple of {k}")
        return value // k
    return value


def eval_shape(shape: Sequence[Dim], dims: Mapping[str, int]) -> List[int]:
    """Resolve every dim of a manifest shape."""
    return [eval_dim(d, dims) for d in shape]


def defaults(name: str, stage12_size: int, stage3_size: int, stage3_canvas: Sequence[int]) -> dict:
    """Pipeline defaults (spec §1.2–§1.9); only the resolutions differ between ``full`` and ``tiny``.

    stage12_size: side of the square stage-1/2 frames (256 official); stage3_size: side of the upscaled square
    content for the enhancer (720 official); stage3_canvas: [H, W] after letterbox padding ([720, 1280] official).
    """
    return {
        "fps": FPS,
        "latent_scale": LATENT_SCALE,
        "stage1": {"height": stage12_size, "width": stage12_size, "num_frames": 16, "num_inference_steps": 50,
                   "guidance_scale": 9.0, "scheduler": "stage1"},
        "stage2": {"height": stage12_size, "width": stage12_size, "window_frames": 16, "conditioning_frames": 8,
                   "anchor_frames": 1, "num_inference_steps": 50, "guidance_scale": 7.5, "eta": 1.0, "seed": 33,
                   "negative_prompt": "", "scheduler": "stage2",
                   # not in the paper: denoise each window's new frames beside its conditioning frames' own
                   # noised latents (lib/pipeline/replace-overlap.ts); the embedded default model turns it on
                   "replace_overlap": 0.0,
                   # not in the paper: sample a window again (up to this many times) when its seam looks like a
                   # scene cut (lib/pipeline/cut-guard.ts); the embedded default model turns it on
                   "cut_retries": 0},
        "stage3": {"height": stage3_size, "width": stage3_size, "canvas_height": int(stage3_canvas[0]),
                   "canvas_width": int(stage3_canvas[1]), "resize_mode": "bicubic", "num_inference_steps": 30,
                   "guidance_scale": 7.5, "guidance_rescale": 0.2, "noise_level": 600, "start_timestep": 599,
                   "chunk_frames": 24, "overlap_frames": 8, "solver": "dpmpp_2m_sde", "timestep_spacing": "trailing",
                   "prediction_type": "v_prediction", "noise_seed": 0, "negative_prompt": "", "prompt_suffix": ", ",
                   "scheduler": "stage3"},
        "precision": {"stage1": "float16", "stage2": "float32", "stage3_unet": "float16", "stage3_vae": "float32"},
    }


def merge_defaults(base: dict, override: Mapping) -> dict:
    """``base`` with ``override`` deep-merged in; keys that ``base`` lacks are rejected (typos would be ignored
    by the pipeline otherwise)."""
    out = dict(base)
    for k, v in override.items():
        if k not in base:
            raise ValueError(f"unknown defaults key {k!r}; expected one of {sorted(base)}")
        out[k] = merge_defaults(base[k], v) if isinstance(v, Mapping) and isinstance(base[k], dict) else v
    return out


def schedulers(ddim_config: Mapping = MODELSCOPE_DDIM_CONFIG, prediction_type: Optional[str] = None) -> dict:
    """Per-stage scheduler configs as read by ``lib/schedulers/config.ts`` (diffusers objects, snake_case).
    ``prediction_type`` overrides what the stage-1/2 UNets predict (ModelScope: epsilon; the trained tiny default
    model: v_prediction)."""
    cfg = dict(ddim_config, **({"prediction_type": prediction_type} if prediction_type else {}))
    return {"stage1": {"type": "dpm_solver_multistep", "config": dict(cfg)},
            "stage2": {"type": "ddim", "config": dict(cfg)},
            "stage3": {"type": "logsnr_cosine_interp", "config": dict(VID2VID_SCHEDULE_CONFIG)}}


FULL_SOURCES = [
    {"components": ["unet_stage2", "apm_image_encoder"], "source": "https://huggingface.co/PAIR/StreamingT2V "
     "(streaming_t2v.ckpt: base_model.*, unet.*, image_encoder.model.visual.*, resampler.*)",
     "license": "MIT (licence of the StreamingT2V code repository; the checkpoint card states none)"},
    {"components": ["text_encoder", "vae_encoder", "vae_decoder", "unet_stage1"],
     "source": "https://huggingface.co/damo-vilab/text-to-video-ms-1.7b (text_encoder, vae, unet, tokenizer, "
               "scheduler)", "license": "CC-BY-NC-4.0 (model card metadata; its text says CC-BY-NC-ND)"},
    {"components": ["enhancer_text_encoder", "enhancer_unet", "enhancer_vae_encoder", "enhancer_vae_decoder"],
     "source": "https://modelscope.cn/models/damo/Video-to-Video rev v1.1.0 (non_ema_0035000.pth, "
               "open_clip_pytorch_model.bin, v2-1_512-ema-pruned.ckpt)",
     "license": "MS-Vid2Vid-XL: see the model card (CC-BY-NC family, unverified here); OpenCLIP ViT-H-14 "
                "laion2b_s32b_b79k: MIT; SD 2.1 VAE: CreativeML Open RAIL++-M"},
]


def tiny_sources(seed: int, weights_file: Optional[str] = None) -> List[dict]:
    """Provenance of a directory exported from random (or given, own-layout) weights."""
    source = (f"weights from {os.path.basename(weights_file)} (models.export --weights)" if weights_file
              else f"random initialisation by models.export (torch seed {seed})")
    return [{"components": list(ROLES), "source": source, "license": "MIT (this project)"}]


def prompt_words(words: Sequence[str]) -> List[str]:
    """The manifest's ``prompt_words``: sorted, unique, lowercase words of letters (what the library splits a prompt
    into: ``lib/pipeline/vocabulary.ts``). Anything else is a ValueError naming the word."""
    out = sorted(set(words))
    for w in out:
        if not isinstance(w, str) or not w or w != w.lower() or not w.isalpha():
            raise ValueError(f"prompt_words: {w!r} is not a lowercase word of letters")
    if not out:
        raise ValueError("prompt_words: the list is empty (give None for an open vocabulary)")
    return out


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """Streaming sha256 of one file (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def file_table(out_dir: str, names: Sequence[str]) -> Dict[str, dict]:
    """``{name: {"sha256", "bytes"}}`` for the given files of ``out_dir``."""
    return {n: {"sha256": sha256_file(os.path.join(out_dir, n)), "bytes": os.path.getsize(os.path.join(out_dir, n))}
            for n in sorted(names)}


def write_manifest(out_dir: str, manifest: dict) -> str:
    """Write ``manifest.json`` (sorted keys inside objects kept in insertion order, 2-space indent)."""
    path = os.path.join(out_dir, MANIFEST_NAME)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return path


def read_manifest(model_dir: str, verify_hashes: bool = True) -> dict:
    """Load and check a manifest (format, version, roles, files present with matching sha256); raises ValueError."""
    path = os.path.join(model_dir, MANIFEST_NAME)
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {manifest.get('format_version')} (supported: {FORMAT_VERSION})")
    roles = [c["role"] for c in manifest["components"]]
    if sorted(roles) != sorted(ROLES):
        raise ValueError(f"{path}: roles {roles} differ from {list(ROLES)}")
    for name, entry in manifest["files"].items():
        file_path = os.path.join(model_dir, name)
        if not os.path.isfile(file_path):
            raise ValueError(f"{file_path}: listed in the manifest but missing")
        if verify_hashes and sha256_file(file_path) != entry["sha256"]:
            raise ValueError(f"{file_path}: sha256 differs from the manifest")
    return manifest
