"""Configurations of the StreamingT2V stage-1/stage-2 networks (spec §2, §2.5, §3, §5).

Two configurations are built from the same code:

* ``FULL`` – the official sizes: ModelScope ``damo-vilab/text-to-video-ms-1.7b`` ``unet/config.json``
  (spec §2.5), the CAM of ``VideoLDM.__init__`` (spec §2.1/§2.2), OpenCLIP ViT-H/14 (spec §3) and the
  ``ImgEmbContextResampler`` defaults (1024 -> 1280 -> 16·1024).
* ``TINY`` – the same module tree (4 down blocks, 2 layers per block, 12 skips + mid, 13 CAM mergers,
  16 APM mixers, 4-stage stride-2x3 frame encoder) with small widths, for CPU tests and fixtures.

Constants that are hard-coded in the official code are made explicit here so the tiny configuration can shrink
them while keeping the structure:

* ``temporal_conv_groups``: ``TemporalConvLayer`` always uses 32 groups (diffusers 0.27 default).
* ``merger_head_dim`` / ``merger_groups``: ``ConditionalModel`` uses head_dim 64 and GroupNorm(32, eps 1e-6).
* ``text_tokens`` / ``image_tokens``: the APM mixing Conv1d is hard-coded 93 -> 77 and LayerNorm(1024)
  (``attention_processor.Attention.__init__``), i.e. 77 text + 16 image tokens and the cross-attention width.
"""
import math
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence, Tuple


@dataclass(frozen=True)
class UNet3DConfig:
    """ModelScope ``UNet3DConditionModel`` (diffusers layout, spec §2.5). Latents are [B, C, F, H, W]."""

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: Tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attention_head_dim: int = 64          # heads = C / 64 in every spatial / temporal transformer
    cross_attention_dim: int = 1024
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    transformer_in_heads: int = 8         # transformer_in: 8 heads x attention_head_dim over block_out[0]
    temporal_conv_groups: int = 32        # TemporalConvLayer GroupNorm groups (hard-coded 32 upstream)
    text_tokens: int = 77                 # CLIP text context length
    image_tokens: int = 16                # APM resampler tokens appended after the text tokens (spec §3)

    @property
    def time_embed_dim(self) -> int:
        return self.block_out_channels[0] * 4

    @property
    def skip_channels(self) -> Tuple[int, ...]:
        """Channels of the 12 down-path skips s0..s11 (spec §2.3/§2.4), i.e. of the 12 down mergers."""
        chans = [self.block_out_channels[0]]
        for i, c in enumerate(self.block_out_channels):
            chans += [c] * self.layers_per_block
            if i < len(self.block_out_channels) - 1:
                chans.append(c)
        return tuple(chans)


@dataclass(frozen=True)
class CAMConfig:
    """CAM feature extractor + injector (spec §2.1–§2.4)."""

    cond_channels: Tuple[int, ...] = (32, 96, 256, 512)  # ControlNetConditioningEmbedding block_out_channels
    num_cond_frames: int = 8                             # CAM runs on window positions 0..7
    num_frames: int = 16                                 # stage-2 window length
    merger_head_dim: int = 64
    merger_groups: int = 32
    merger_eps: float = 1e-6


@dataclass(frozen=True)
class CLIPVisionConfig:
    """OpenCLIP ``VisionTransformer`` (ViT-H/14, ``laion2b_s32b_b79k``) visual tower, spec §3."""

    image_size: int = 224
    patch_size: int = 14
    width: int = 1280
    layers: int = 32
    heads: int = 16                        # head_width 80
    mlp_ratio: float = 4.0
    output_dim: int = 1024
    ln_eps: float = 1e-5
    mean: Tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: Tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ResamplerConfig:
    """``ImgEmbContextResampler``: Linear(D, inner) -> SiLU -> Linear(inner, tokens·D)."""

    inner_dim: int = 1280
    num_tokens: int = 16


@dataclass(frozen=True)
class StreamingT2VNetConfig:
    """All network sizes of stages 1/2 (UNet, CAM, APM)."""

    name: str = "full"
    unet: UNet3DConfig = field(default_factory=UNet3DConfig)
    cam: CAMConfig = field(default_factory=CAMConfig)
    clip: CLIPVisionConfig = field(default_factory=CLIPVisionConfig)
    resampler: ResamplerConfig = field(default_factory=ResamplerConfig)


FULL = StreamingT2VNetConfig()

TINY = StreamingT2VNetConfig(
    name="tiny",
    unet=UNet3DConfig(
        block_out_channels=(16, 16, 32, 32),
        layers_per_block=2,
        attention_head_dim=8,             # 2 / 4 heads; transformer_in 8 heads x 8 over 16 channels
        cross_attention_dim=64,
        norm_num_groups=4,
        transformer_in_heads=8,
        temporal_conv_groups=4,
    ),
    cam=CAMConfig(cond_channels=(8, 8, 16, 16), merger_head_dim=8, merger_groups=4),
    clip=CLIPVisionConfig(image_size=32, patch_size=8, width=64, layers=2, heads=4, output_dim=64),
    resampler=ResamplerConfig(inner_dim=80, num_tokens=16),
)

CONFIGS = {"full": FULL, "tiny": TINY}


def with_widths(unet: UNet3DConfig, channels: Sequence[int]) -> UNet3DConfig:
    """``unet`` with ``block_out_channels = channels`` (e.g. a wider stage-1 UNet of the tiny model, session 18).

    Every width must be a positive multiple of the config's GroupNorm groups and attention head width, and there
    must be one per down block; a ``ValueError`` names the first rule broken. Example::

        with_widths(TINY.unet, (32, 32, 64, 64))     # stage 1: 4.1 M parameters instead of 1.1 M
    """
    channels = tuple(int(c) for c in channels)
    if len(channels) != len(unet.block_out_channels):
        raise ValueError(f"expected {len(unet.block_out_channels)} block widths, got {len(channels)}: {channels}")
    step = math.lcm(unet.norm_num_groups, unet.temporal_conv_groups, unet.attention_head_dim)
    bad = [c for c in channels if c <= 0 or c % step]
    if bad:
        raise ValueError(f"block widths must be positive multiples of {step} (GroupNorm groups "
                         f"{unet.norm_num_groups}, temporal groups {unet.temporal_conv_groups}, head width "
                         f"{unet.attention_head_dim}); {bad[0]} is not")
    return replace(unet, block_out_channels=channels)


def widths_of(unet: UNet3DConfig, state: Mapping[str, "torch.Tensor"], prefix: str = "") -> UNet3DConfig:
    """``unet`` with the block widths of a ``UNet3DConditionModel`` state dict (each down block's first conv), so
    that a trained UNet of another width loads without naming its width again; ``prefix="base_model."`` reads a
    ``Stage2UNet``'s. A ``ValueError`` if ``state`` is not such a state dict."""
    keys = [f"{prefix}down_blocks.{i}.resnets.0.conv1.weight" for i in range(len(unet.block_out_channels))]
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"not a UNet3DConditionModel state dict: no {missing[0]}")
    return with_widths(unet, [state[k].shape[0] for k in keys])


def get_config(name: str) -> StreamingT2VNetConfig:
    """Return the named configuration (``"full"`` or ``"tiny"``)."""
    if name not in CONFIGS:
        raise KeyError(f"unknown config {name!r}; expected one of {sorted(CONFIGS)}")
    return CONFIGS[name]
