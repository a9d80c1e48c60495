"""The one place where official checkpoint keys are mapped to this package's module names (pitfall G13).

Module names were chosen to equal the official ones, so only prefixes change:

| source | official key prefix | our module / key prefix |
|---|---|---|
| ModelScope diffusers ``unet/diffusion_pytorch_model.bin`` | (none) | ``UNet3DConditionModel`` (identical keys) |
| ``streaming_t2v.ckpt["state_dict"]`` | ``base_model.`` | ``Stage2UNet.base_model.`` (identical) |
| same | ``unet.`` (CAM ``ControlNetModel``) | ``Stage2UNet.cam.`` |
| same | ``image_encoder.model.visual.`` | ``APMImageEncoder.visual.`` |
| same | ``resampler.`` | ``APMImageEncoder.resampler.`` |

Dropped on purpose: ``image_encoder.model.{token_embedding, positional_embedding, ln_final, text_projection,
logit_scale}`` (OpenCLIP text leftovers kept by ``del model.transformer``; 51,723,265 params, unused by the visual
tower), and the ``vae.`` / ``text_encoder.`` copies (other modules of the pipeline).
"""
from typing import Dict, List, Tuple

import torch

StateDict = Dict[str, torch.Tensor]

STAGE2_PREFIXES: List[Tuple[str, str]] = [("base_model.", "base_model."), ("unet.", "cam.")]
APM_PREFIXES: List[Tuple[str, str]] = [("image_encoder.model.visual.", "visual."), ("resampler.", "resampler.")]
OPENCLIP_TEXT_LEFTOVERS = ("token_embedding.", "positional_embedding", "ln_final.", "text_projection", "logit_scale")


def remap_prefixes(sd: StateDict, table: List[Tuple[str, str]]) -> StateDict:
    """Keep the entries whose key starts with a source prefix of ``table``, renaming that prefix."""
    out: StateDict = {}
    for key, value in sd.items():
        for src, dst in table:
            if key.startswith(src):
                out[dst + key[len(src):]] = value
                break
    return out


def stage2_from_checkpoint(sd: StateDict) -> StateDict:
    """``streaming_t2v.ckpt["state_dict"]`` -> ``Stage2UNet`` state dict (``base_model.*``, ``cam.*``)."""
    return remap_prefixes(sd, STAGE2_PREFIXES)


def apm_from_checkpoint(sd: StateDict) -> StateDict:
    """``streaming_t2v.ckpt["state_dict"]`` -> ``APMImageEncoder`` state dict (``visual.*``, ``resampler.*``)."""
    return remap_prefixes(sd, APM_PREFIXES)


def openclip_visual_from_openclip(sd: StateDict) -> StateDict:
    """A plain OpenCLIP model state dict (``visual.*`` + text parts) -> the ``visual.*`` entries only."""
    return remap_prefixes(sd, [("visual.", "visual.")])


def stage1_from_diffusers(sd: StateDict) -> StateDict:
    """ModelScope diffusers ``unet`` state dict -> ``UNet3DConditionModel`` (same names; copied as a dict)."""
    return dict(sd)


def dropped_checkpoint_keys(sd: StateDict) -> List[str]:
    """Keys of a full ``streaming_t2v.ckpt`` state dict that none of the mappings above use (for diagnostics)."""
    used = tuple(src for src, _ in STAGE2_PREFIXES + APM_PREFIXES)
    return [k for k in sd if not k.startswith(used)]
