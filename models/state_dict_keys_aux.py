"""All checkpoint key renaming for the auxiliary networks, in one place (spec §5).

Every function takes a checkpoint's state dict (name -> tensor) and returns a new dict whose names and
shapes match our module exactly, so that ``module.load_state_dict(result, strict=True)`` succeeds.
Unknown keys raise ``KeyError`` instead of being silently dropped; keys that are known to be unused
(listed per function) are dropped.

| our module | checkpoint | function |
|---|---|---|
| ``AutoencoderKL`` (models/vae.py) | ModelScope ``vae/diffusion_pytorch_model.bin`` (diffusers) | ``vae_from_diffusers`` |
| ``AutoencoderKL`` | SD 2.1 ``v2-1_512-ema-pruned.ckpt`` ``state_dict`` (ldm, ``first_stage_model.*``) | ``vae_from_ldm`` |
| ``VAEEncoder`` / ``VAEDecoder`` | a converted ``AutoencoderKL`` dict | ``vae_encoder_subset`` / ``vae_decoder_subset`` |
| ``CLIPTextEncoder`` (models/clip_text.py) | ModelScope ``text_encoder`` (HF ``CLIPTextModel``) | ``clip_text_from_hf`` |
| ``OpenCLIPTextEncoder`` | enhancer ``open_clip_pytorch_model.bin`` (OpenCLIP ViT-H-14) | ``openclip_text_from_open_clip`` |
| ``Vid2VidUNet`` (models/vid2vid_unet.py) | enhancer ``non_ema_0035000.pth`` | ``vid2vid_unet_from_modelscope`` |
"""

import re
from typing import Dict, Mapping

import torch

StateDict = Dict[str, torch.Tensor]

_VAE_ATTENTION_LDM = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_VAE_ATTENTION_DEPRECATED = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _unwrap(sd: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """Accept a raw state dict or a checkpoint holding one under 'state_dict'."""
    inner = sd.get("state_dict") if isinstance(sd, dict) else None
    return inner if isinstance(inner, dict) else sd


def _linear_weight(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """1x1 Conv2d attention weights [C, C, 1, 1] -> Linear [C, C] (biases unchanged)."""
    if name.endswith(".weight") and tensor.dim() == 4:
        return tensor[:, :, 0, 0]
    return tensor


def vae_from_ldm(sd: Mapping[str, torch.Tensor], num_levels: int = 4, prefix: str = "first_stage_model.") -> StateDict:
    """ldm AutoencoderKL names -> ours (diffusers). Non-VAE keys of a full SD checkpoint (model.*,
    cond_stage_model.*, ...) and ``loss.*`` are ignored when ``prefix`` is set; ``num_levels`` = len(ch_mult).
    Mid-block attention 1x1 conv weights become Linear weights; ``decoder.up.i`` is ``up_blocks.(L-1-i)``."""
    sd = _unwrap(sd)
    out: StateDict = {}
    for key, tensor in sd.items():
        if prefix:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix):]
        if key.startswith("loss."):  # training-only discriminator/LPIPS weights, if a checkpoint kept them
            continue
        name = key
        name = re.sub(r"^encoder\.down\.(\d+)\.block\.(\d+)\.", r"encoder.down_blocks.\1.resnets.\2.", name)
        name = re.sub(r"^encoder\.down\.(\d+)\.downsample\.conv\.", r"encoder.down_blocks.\1.downsamplers.0.conv.", name)
        name = re.sub(r"^decoder\.up\.(\d+)\.block\.(\d+)\.",
                      lambda m: f"decoder.up_blocks.{num_levels - 1 - int(m.group(1))}.resnets.{m.group(2)}.", name)
        name = re.sub(r"^decoder\.up\.(\d+)\.upsample\.conv\.",
                      lambda m: f"decoder.up_blocks.{num_levels - 1 - int(m.group(1))}.upsamplers.0.conv.", name)
        name = re.sub(r"^(encoder|decoder)\.mid\.block_(\d)\.", lambda m: f"{m.group(1)}.mid_block.resnets.{int(m.group(2)) - 1}.", name)
        name = re.sub(r"^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.",
                      lambda m: f"{m.group(1)}.mid_block.attentions.0.{_VAE_ATTENTION_LDM[m.group(2)]}.", name)
        name = re.sub(r"^(encoder|decoder)\.norm_out\.", r"\1.conv_norm_out.", name)
        name = name.replace(".nin_shortcut.", ".conv_shortcut.")
        if name == key and not re.match(r"^(encoder|decoder)\.(conv_in|conv_out)\.|^(post_)?quant_conv\.", name):
            raise KeyError(f"unexpected ldm VAE key {key!r}")
        out[name] = _linear_weight(name, tensor) if ".attentions.0." in name else tensor
    return out


def vae_from_diffusers(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """diffusers AutoencoderKL -> ours: identity, except the pre-0.14 attention names
    (query/key/value/proj_attn, possibly as 1x1 conv weights) of older saved VAEs."""
    out: StateDict = {}
    for key, tensor in _unwrap(sd).items():
        name = re.sub(r"\.attentions\.0\.(query|key|value|proj_attn)\.",
                      lambda m: f".attentions.0.{_VAE_ATTENTION_DEPRECATED[m.group(1)]}.", key)
        out[name] = _linear_weight(name, tensor) if ".attentions.0." in name else tensor
    return out


def _subset(sd: Mapping[str, torch.Tensor], prefixes) -> StateDict:
    return {k: v for k, v in sd.items() if k.startswith(prefixes)}


def vae_encoder_subset(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Keys of ``VAEEncoder`` (encoder.*, quant_conv.*) from a converted AutoencoderKL dict."""
    return _subset(sd, ("encoder.", "quant_conv."))


def vae_decoder_subset(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Keys of ``VAEDecoder`` (post_quant_conv.*, decoder.*) from a converted AutoencoderKL dict."""
    return _subset(sd, ("decoder.", "post_quant_conv."))


def clip_text_from_hf(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """HF CLIPTextModel -> ours: identity; drops the ``position_ids`` buffer older saves contain."""
    out: StateDict = {}
    for key, tensor in _unwrap(sd).items():
        if key.endswith("embeddings.position_ids"):
            continue
        if not key.startswith("text_model."):
            raise KeyError(f"unexpected CLIPTextModel key {key!r}")
        out[key] = tensor
    return out


def openclip_text_from_open_clip(sd: Mapping[str, torch.Tensor], layers_used: int = 23) -> StateDict:
    """OpenCLIP CLIP model -> ``OpenCLIPTextEncoder`` (first ``layers_used`` blocks).

    Dropped: ``visual.*`` (the enhancer deletes the visual tower), ``text_projection``, ``logit_scale``,
    ``attn_mask`` and the blocks from ``layers_used`` on (the penultimate output never reaches them).
    """
    out: StateDict = {}
    for key, tensor in _unwrap(sd).items():
        block = re.match(r"^transformer\.resblocks\.(\d+)\.", key)
        if key.startswith("visual.") or key in ("text_projection", "logit_scale", "attn_mask"):
            continue
        if block and int(block.group(1)) >= layers_used:
            continue
        if not (block or key in ("token_embedding.weight", "positional_embedding")
                or key.startswith("ln_final.")):
            raise KeyError(f"unexpected OpenCLIP key {key!r}")
        out[key] = tensor
    return out


def vid2vid_unet_from_modelscope(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """``non_ema_0035000.pth`` -> ``Vid2VidUNet``: names are identical (the upstream loader uses
    ``strict=True``); unwraps ``state_dict`` and strips a DataParallel ``module.`` prefix if present."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in _unwrap(sd).items()}
