"""CAM feature injector (spec §2.4): zero-initialised temporal cross-attention on a UNet skip.

Official module tree (``conditioning.py``): ``ConditionalModel(conditional_model="cross_attention")`` holding
``temporal_transformer = CrossAttention(...)`` with ``norm`` (GroupNorm 32, eps 1e-6), ``proj_in``, ``attention``
(diffusers ``Attention``: to_q/to_k/to_v without bias, to_out.0 with bias, heads C/64) and ``proj_out``
(zero-initialised). The base UNet holds 12 of them in ``cross_attention_merger_down_blocks`` and one as
``cross_attention_merger_mid_block``; 6C²+5C parameters each.
"""
import torch
from torch import nn

from .unet3d_attention import Attention


class TemporalCrossAttention(nn.Module):
    """16 skip-frame queries attend, per pixel, to the 8 raw CAM frames; residual add.

    ``forward(x_sc [B·F, C, H, W], x_cam [B·Fc, C, H, W], num_frames=F) -> [B·F, C, H, W]``:
    q_in = proj_in(GroupNorm(x_sc as [B, C, F, H, W]) as [B·H·W, F, C]); kv = x_cam as [B·H·W, Fc, C] (no norm,
    no proj_in); out = x_sc + proj_out(attention(q_in, kv)) reshaped back.
    """

    def __init__(self, channels: int, head_dim: int, groups: int, eps: float, use_sdpa: bool = False):
        super().__init__()
        self.attention = Attention(channels, channels // head_dim, head_dim, channels, use_sdpa=use_sdpa)
        self.norm = nn.GroupNorm(groups, channels, eps=eps)
        self.proj_in = nn.Linear(channels, channels)
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)   # ConditionalModel zero-initialises proj_out
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x_sc: torch.Tensor, x_cam: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, c, h, w = x_sc.shape
        b = bf // num_frames
        fc = x_cam.shape[0] // b
        q = x_sc.reshape(b, num_frames, c, h, w).permute(0, 2, 1, 3, 4)            # [B, C, F, H, W]
        q = self.norm(q).permute(0, 3, 4, 2, 1).reshape(b * h * w, num_frames, c)  # [B·H·W, F, C]
        q = self.proj_in(q)
        kv = x_cam.reshape(b, fc, c, h, w).permute(0, 3, 4, 1, 2).reshape(b * h * w, fc, c)
        r = self.proj_out(self.attention(q, kv))                                    # [B·H·W, F, C]
        r = r.reshape(b, h, w, num_frames, c).permute(0, 3, 4, 1, 2).reshape(bf, c, h, w)
        return x_sc + r


class CAMMerger(nn.Module):
    """Wrapper named like the official ``ConditionalModel`` (parameters under ``temporal_transformer.``)."""

    def __init__(self, channels: int, head_dim: int = 64, groups: int = 32, eps: float = 1e-6,
                 use_sdpa: bool = False):
        super().__init__()
        self.temporal_transformer = TemporalCrossAttention(channels, head_dim, groups, eps, use_sdpa=use_sdpa)

    def forward(self, x_sc: torch.Tensor, x_cam: torch.Tensor, num_frames: int) -> torch.Tensor:
        return self.temporal_transformer(x_sc, x_cam, num_frames)
