"""Convolutional / embedding layers of the ModelScope UNet3D (diffusers 0.27 names), spec §2.5.

Frames are folded into the batch B-major: a latent [B, C, F, H, W] is handled as [B·F, C, H, W] with row b·F + f.
"""
import math
from typing import List

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of diffusers ``Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)``.

    ``timesteps [B] -> [B, dim]`` laid out as [cos(t·w), sin(t·w)], w_i = exp(-ln(max_period)·i/(dim/2)).
    """
    half = dim // 2
    exponent = torch.arange(0, half, dtype=torch.float32, device=timesteps.device) * (-math.log(max_period) / half)
    args = timesteps.float()[:, None] * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedding(nn.Module):
    """``linear_1`` (C -> 4C), SiLU, ``linear_2`` (4C -> 4C)."""

    def __init__(self, in_dim: int, embed_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, embed_dim)
        self.linear_2 = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    """diffusers ``ResnetBlock2D`` (time_embedding_norm "default", output_scale_factor 1).

    ``forward(x [N, Cin, H, W], temb [N, E]) -> [N, Cout, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


def _temporal_stage(in_dim: int, out_dim: int, groups: int, with_dropout: bool) -> nn.Sequential:
    layers: List[nn.Module] = [nn.GroupNorm(groups, in_dim), nn.SiLU()]
    if with_dropout:
        layers.append(nn.Dropout(0.1))  # official dropout 0.1 (inactive in eval)
    layers.append(nn.Conv3d(in_dim, out_dim, (3, 1, 1), padding=(1, 0, 0)))
    return nn.Sequential(*layers)


class TemporalConvLayer(nn.Module):
    """diffusers ``TemporalConvLayer``: 4 x (GroupNorm, SiLU, [Dropout], Conv3d (3,1,1)) + identity.

    ``forward(x [B·F, C, H, W], num_frames=F) -> [B·F, C, H, W]``; the last conv is zero-initialised.
    """

    def __init__(self, dim: int, groups: int = 32):
        super().__init__()
        self.conv1 = _temporal_stage(dim, dim, groups, False)
        self.conv2 = _temporal_stage(dim, dim, groups, True)
        self.conv3 = _temporal_stage(dim, dim, groups, True)
        self.conv4 = _temporal_stage(dim, dim, groups, True)
        nn.init.zeros_(self.conv4[-1].weight)
        nn.init.zeros_(self.conv4[-1].bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, c, h, w = x.shape
        t = x.reshape(bf // num_frames, num_frames, c, h, w).permute(0, 2, 1, 3, 4)   # [B, C, F, H, W]
        y = self.conv4(self.conv3(self.conv2(self.conv1(t))))
        t = t + y
        return t.permute(0, 2, 1, 3, 4).reshape(bf, c, h, w)


class Downsample2D(nn.Module):
    """``conv``: 3x3 stride-2 conv, padding 1."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample2D(nn.Module):
    """Nearest upsampling to ``size`` (x2 when divisible), then ``conv`` 3x3."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: List[int]) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))
