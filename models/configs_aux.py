"""Configurations of the auxiliary networks: VAE, text encoders and the stage-3 enhancer UNet.

Every network is built from the same code in two sizes:

* ``full``: the official sizes (spec §5), used to load the released checkpoints.
* ``tiny``: the same structure with small widths and depths (a few hundred thousand to ~1.5M
  parameters each), used for fixtures and tests on CPU. The tiny VAE still downsamples 8x into
  4 latent channels, the tiny text encoders still take 77 tokens.

``build_aux_model(kind, size, meta=True)`` constructs a network without allocating weights
(parameters on the ``meta`` device). That works on torch 1.13 (no ``torch.device`` context
manager there) by routing ``torch.empty`` to ``meta`` while the modules are constructed.
"""

import contextlib
import importlib
from dataclasses import dataclass
from typing import Iterator, Tuple

import torch

#: Latent scale of both SD-style VAEs (ModelScope stage 1/2 and SD 2.1 stage 3), spec G6.
VAE_SCALING_FACTOR = 0.18215

#: Token sequence length of both text encoders (spec §1.6, §1.8).
TEXT_MAX_LENGTH = 77

#: Vocabulary size of the tiny text encoders. The tiny tokenizer (models/tokenizer.py) is capped
#: so that all its ids, BOS and EOS included, are below this number.
TINY_VOCAB_SIZE = 1024


@dataclass(frozen=True)
class VAEConfig:
    """SD-style AutoencoderKL (diffusers ``AutoencoderKL`` layout)."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 4
    block_out_channels: Tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    norm_eps: float = 1e-6
    scaling_factor: float = VAE_SCALING_FACTOR


@dataclass(frozen=True)
class CLIPTextConfig:
    """HF ``CLIPTextModel`` (ModelScope ``text_encoder``: OpenCLIP ViT-H/14 text tower cut to 23 layers)."""

    vocab_size: int = 49408
    max_position_embeddings: int = TEXT_MAX_LENGTH
    hidden_size: int = 1024
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    num_hidden_layers: int = 23
    layer_norm_eps: float = 1e-5


@dataclass(frozen=True)
class OpenCLIPTextConfig:
    """OpenCLIP ViT-H-14 text tower as used by the enhancer (``FrozenOpenCLIPEmbedder``, layer 'penultimate').

    ``layers`` is the depth of the tower in the checkpoint (24); with ``penultimate=True`` only the
    first ``layers - 1`` blocks are built, because the last block's output is never used (spec §1.8).
    """

    vocab_size: int = 49408
    context_length: int = TEXT_MAX_LENGTH
    width: int = 1024
    heads: int = 16
    layers: int = 24
    mlp_ratio: int = 4
    penultimate: bool = True
    layer_norm_eps: float = 1e-5


@dataclass(frozen=True)
class Vid2VidUNetConfig:
    """MS-Vid2Vid-XL ``Vid2VidSDUNet`` (modelscope ``unet_v2v.py`` defaults, spec §5)."""

    in_dim: int = 4
    dim: int = 320
    context_dim: int = 1024
    out_dim: int = 4
    dim_mult: Tuple[int, ...] = (1, 2, 4, 4)
    num_heads: int = 8          # heads of the initial temporal transformer (8 x head_dim wide)
    head_dim: int = 64          # spatial/temporal attention heads = channels // head_dim
    num_res_blocks: int = 2
    attn_scales: Tuple[float, ...] = (1.0, 0.5, 0.25)
    norm_groups: int = 32


VAE_CONFIGS = {
    "full": VAEConfig(),
    "tiny": VAEConfig(block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8),
}

CLIP_TEXT_CONFIGS = {
    "full": CLIPTextConfig(),
    "tiny": CLIPTextConfig(vocab_size=TINY_VOCAB_SIZE, hidden_size=64, num_attention_heads=4,
                           intermediate_size=256, num_hidden_layers=4),
}

OPENCLIP_TEXT_CONFIGS = {
    "full": OpenCLIPTextConfig(),
    "tiny": OpenCLIPTextConfig(vocab_size=TINY_VOCAB_SIZE, width=64, heads=4, layers=5),
}

VID2VID_UNET_CONFIGS = {
    "full": Vid2VidUNetConfig(),
    "tiny": Vid2VidUNetConfig(dim=16, context_dim=64, dim_mult=(1, 2, 2, 2), num_heads=2, head_dim=16,
                              num_res_blocks=1, norm_groups=8),
}

_CONFIG_TABLES = {
    "vae": VAE_CONFIGS,
    "clip_text": CLIP_TEXT_CONFIGS,
    "openclip_text": OPENCLIP_TEXT_CONFIGS,
    "vid2vid_unet": VID2VID_UNET_CONFIGS,
}


def get_config(kind: str, size: str):
    """Config of network ``kind`` ('vae', 'clip_text', 'openclip_text', 'vid2vid_unet') in ``size`` ('full'|'tiny')."""
    if kind not in _CONFIG_TABLES:
        raise ValueError(f"unknown network kind {kind!r}; expected one of {sorted(_CONFIG_TABLES)}")
    table = _CONFIG_TABLES[kind]
    if size not in table:
        raise ValueError(f"unknown size {size!r} for {kind}; expected one of {sorted(table)}")
    return table[size]


@contextlib.contextmanager
def meta_device() -> Iterator[None]:
    """Construct modules without allocating parameter storage (torch 1.13 and 2.x).

    nn.Linear/Conv/Embedding/GroupNorm/LayerNorm and our own parameters all allocate through
    ``torch.empty``; while this context is active, calls without an explicit device land on ``meta``.
    """
    original = torch.empty

    def empty_on_meta(*args, **kwargs):
        if kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return original(*args, **kwargs)

    torch.empty = empty_on_meta
    try:
        yield
    finally:
        torch.empty = original


def build_aux_model(kind: str, size: str, meta: bool = False, **kwargs) -> torch.nn.Module:
    """Build the full network of ``kind`` in ``size``; ``meta=True`` allocates no weights.

    kinds: 'vae' -> AutoencoderKL, 'clip_text' -> CLIPTextEncoder, 'openclip_text' ->
    OpenCLIPTextEncoder, 'vid2vid_unet' -> Vid2VidUNet. ``kwargs`` go to the constructor
    (for example ``use_sdpa``).
    """
    classes = {
        "vae": ("vae", "AutoencoderKL"),
        "clip_text": ("clip_text", "CLIPTextEncoder"),
        "openclip_text": ("clip_text", "OpenCLIPTextEncoder"),
        "vid2vid_unet": ("vid2vid_unet", "Vid2VidUNet"),
    }
    module_name, class_name = classes[kind] if kind in classes else (None, None)
    config = get_config(kind, size)
    cls = getattr(importlib.import_module(f".{module_name}", __package__), class_name)
    context = meta_device() if meta else contextlib.nullcontext()
    with context:
        return cls(config, **kwargs)
