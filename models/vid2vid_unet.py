"""Stage-3 enhancer UNet: MS-Vid2Vid-XL ``Vid2VidSDUNet`` (spec §1.8, §1.9, §5).

Structure read from modelscope ``models/multi_modal/video_to_video/modules/unet_v2v.py`` (vendored in
StreamingT2V at ``t2v_enhanced/thirdparty/modelscope/...``): base width 320, multipliers [1,2,4,4],
2 residual blocks per level, spatial transformers (self + cross attention to the 77x1024 OpenCLIP
text tokens) at scales 1, 1/2, 1/4, each followed by a temporal transformer (two self-attentions over
frames, no positional encoding), and a 4-layer temporal convolution inside every residual block. The
output is a v-prediction. Parameter names equal the keys of ``non_ema_0035000.pth`` (including the
upstream spelling ``temopral_conv``), so that file loads with ``strict=True`` and no renaming.

Layout: latents are ``[B, C, F, H, W]`` at the interface; inside, frames are folded into the batch
(``[B*F, C, H, W]``, B-major) and unfolded only for the temporal layers.

Two official quirks are kept: downsampling convolutions pad 2 rows / 1 column (``padding=(2, 1)``)
and upsampling crops one row at top and bottom after the 2x nearest resize, which makes the
official 90x160 latent grid (720x1280 frames) round-trip 90 -> 46 -> 24 -> 13 -> 24 -> 46 -> 90.
For sizes the official code cannot handle (an odd height at an inner level, e.g. 8x8 latents) the
upsampled map is additionally cut to the skip connection's size; where the official code works this
is a no-op.
"""

import math
from typing import Final, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .configs_aux import Vid2VidUNetConfig

#: Default bound on the number of attention scores materialised at once (2^28 floats = 1 GiB fp32).
DEFAULT_ATTENTION_CHUNK = 1 << 28


def timestep_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding, cosine half first: [B] -> [B, dim] (``sinusoidal_embedding`` upstream)."""
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    freqs = torch.pow(10000.0, -exponent)
    args = timesteps.float().unsqueeze(1) * freqs.unsqueeze(0)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2 == 1:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[N, L, h*d] -> [N, h, L, d]."""
    n, length, inner = x.shape
    return x.reshape(n, length, heads, inner // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[N, h, L, d] -> [N, L, h*d]."""
    n, heads, length, d = x.shape
    return x.transpose(1, 2).reshape(n, length, heads * d)


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, max_scores: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v with q [N, h, Lq, d], k/v [N, h, Lk, d] -> [N, h, Lq, d].

    Scores are formed for at most ``max_scores`` elements at a time (chunks of queries), which keeps
    full-resolution spatial attention (14400 tokens at 90x160) within memory, as the upstream
    xformers kernel does. Softmax runs in float32.
    """
    n, heads, lq, d = q.shape
    lk = k.shape[2]
    scale = 1.0 / math.sqrt(d)
    kt = k.transpose(-1, -2)
    rows = max(1, max_scores // max(1, n * heads * lk))
    if rows >= lq:
        probs = (torch.matmul(q, kt) * scale).float().softmax(dim=-1).to(v.dtype)
        return torch.matmul(probs, v)
    parts: List[torch.Tensor] = []
    for qc in torch.split(q, rows, dim=2):
        probs = (torch.matmul(qc, kt) * scale).float().softmax(dim=-1).to(v.dtype)
        parts.append(torch.matmul(probs, v))
    return torch.cat(parts, dim=2)


class Attention(nn.Module):
    """Multi-head (cross-)attention: to_q/to_k/to_v without bias, to_out.0 with bias."""

    heads: Final[int]
    use_sdpa: Final[bool]
    max_scores: Final[int]

    def __init__(self, query_dim: int, context_dim: Optional[int], heads: int, head_dim: int,
                 use_sdpa: bool, max_scores: int):
        super().__init__()
        inner = heads * head_dim
        kv_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.use_sdpa = use_sdpa
        self.max_scores = max_scores
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(kv_dim, inner, bias=False)
        self.to_v = nn.Linear(kv_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor]) -> torch.Tensor:
        """x [N, L, query_dim], context [N, Lc, context_dim] or None (self-attention)."""
        kv = x if context is None else context
        q = split_heads(self.to_q(x), self.heads)
        k = split_heads(self.to_k(kv), self.heads)
        v = split_heads(self.to_v(kv), self.heads)
        if self.use_sdpa:  # compile-time constant: the branch is not compiled when False (torch 1.13)
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = chunked_attention(q, k, v, self.max_scores)
        return self.to_out(merge_heads(out))


class GEGLU(nn.Module):
    """proj: Linear(dim, 2*inner); value * gelu(gate)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward with 4x inner width; weights named ``net.0.proj`` and ``net.2`` as upstream."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * 4), nn.Dropout(0.0), nn.Linear(dim * 4, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """attn1 (self) -> attn2 (cross, or self when context_dim is None) -> GEGLU feed-forward, pre-LN."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: Optional[int],
                 use_sdpa: bool, max_scores: int):
        super().__init__()
        self.attn1 = Attention(dim, None, heads, head_dim, use_sdpa, max_scores)
        self.ff = FeedForward(dim)
        self.attn2 = Attention(dim, context_dim, heads, head_dim, use_sdpa, max_scores)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.attn1(self.norm1(x), None) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


def _fold(x5: torch.Tensor) -> torch.Tensor:
    """[B, C, F, H, W] -> [B*F, C, H, W] (B-major)."""
    b, c, f, h, w = x5.shape
    return x5.transpose(1, 2).reshape(b * f, c, h, w)


def _unfold(x: torch.Tensor, frames: int) -> torch.Tensor:
    """[B*F, C, H, W] -> [B, C, F, H, W]."""
    n, c, h, w = x.shape
    return x.reshape(n // frames, frames, c, h, w).transpose(1, 2)


class SpatialTransformer(nn.Module):
    """Per-frame transformer over H*W tokens with cross-attention to the text context (use_linear)."""

    def __init__(self, channels: int, heads: int, head_dim: int, context_dim: int, groups: int,
                 use_sdpa: bool, max_scores: int):
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            [TransformerBlock(inner, heads, head_dim, context_dim, use_sdpa, max_scores)])
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        """x [B*F, C, H, W], context [B*F, 77, D] -> [B*F, C, H, W]."""
        n, c, h, w = x.shape
        t = self.proj_in(self.norm(x).reshape(n, c, h * w).transpose(1, 2))
        for block in self.transformer_blocks:
            t = block(t, context)
        t = self.proj_out(t).transpose(1, 2).reshape(n, c, h, w)
        return t + x


class TemporalTransformer(nn.Module):
    """Transformer over the F frames of every pixel (two self-attentions), 1x1 Conv1d projections."""

    def __init__(self, channels: int, heads: int, head_dim: int, groups: int, use_sdpa: bool, max_scores: int):
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv1d(channels, inner, kernel_size=1)
        self.transformer_blocks = nn.ModuleList(
            [TransformerBlock(inner, heads, head_dim, None, use_sdpa, max_scores)])
        self.proj_out = nn.Conv1d(inner, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        """x [B*F, C, H, W] -> same; GroupNorm statistics span all frames of a sample."""
        x5 = _unfold(x, frames)
        b, c, f, h, w = x5.shape
        t = self.norm(x5).permute(0, 3, 4, 1, 2).reshape(b * h * w, c, f)
        t = self.proj_in(t).transpose(1, 2)
        for block in self.transformer_blocks:
            t = block(t, None)
        t = self.proj_out(t.transpose(1, 2))
        t = t.reshape(b, h, w, c, f).permute(0, 3, 4, 1, 2)
        return _fold(t + x5)


class TemporalConvBlock(nn.Module):
    """Four (GroupNorm, SiLU, [Dropout], Conv3d (3,1,1)) stages over time, residual (``TemporalConvBlock_v2``)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()

        def stage(with_dropout: bool) -> nn.Sequential:
            conv = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
            if with_dropout:
                return nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), nn.Dropout(0.1), conv)
            return nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), conv)

        self.conv1 = stage(False)
        self.conv2 = stage(True)
        self.conv3 = stage(True)
        self.conv4 = stage(True)

    def forward(self, x5: torch.Tensor) -> torch.Tensor:
        """x5 [B, C, F, H, W] -> same."""
        return x5 + self.conv4(self.conv3(self.conv2(self.conv1(x5))))


class ResBlock(nn.Module):
    """GN-SiLU-Conv, + time embedding, GN-SiLU-Dropout-Conv, skip; then the temporal conv block."""

    def __init__(self, in_channels: int, emb_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(groups, in_channels), nn.SiLU(),
                                       nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(nn.GroupNorm(groups, out_channels), nn.SiLU(), nn.Dropout(0.1),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        if in_channels == out_channels:
            self.skip_connection: nn.Module = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(in_channels, out_channels, 1)
        self.temopral_conv = TemporalConvBlock(out_channels, groups)  # upstream spelling

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        """x [B*F, Cin, H, W], emb [B*F, E] -> [B*F, Cout, H, W]."""
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype).unsqueeze(-1).unsqueeze(-1)
        h = self.skip_connection(x) + self.out_layers(h)
        return _fold(self.temopral_conv(_unfold(h, frames)))


class Downsample(nn.Module):
    """3x3 stride-2 convolution with the upstream asymmetric padding (2 rows, 1 column)."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=(2, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """2x nearest resize, drop the first and last row, 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x[:, :, 1:-1, :])


class InputConv(nn.Conv2d):
    """The first 3x3 convolution (``input_blocks.0.0``) with the common layer signature."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        return self._conv_forward(x, self.weight, self.bias)


class LayerStack(nn.Sequential):
    """Layers applied in order; children are named 0, 1, ... like the upstream ``nn.ModuleList`` blocks."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb, context, frames)
        return x


class Vid2VidUNet(nn.Module):
    """MS-Vid2Vid-XL denoiser.

    forward(sample [B, 4, F, h, w], timestep float [B], encoder_hidden_states [B, 77, D])
        -> v-prediction [B, 4, F, h, w].
    """

    dim: Final[int]

    def __init__(self, config: Vid2VidUNetConfig = Vid2VidUNetConfig(), use_sdpa: bool = False,
                 attention_chunk: int = DEFAULT_ATTENTION_CHUNK):
        super().__init__()
        if use_sdpa and not hasattr(F, "scaled_dot_product_attention"):
            raise RuntimeError("use_sdpa=True needs torch >= 2.0 (F.scaled_dot_product_attention)")
        cfg = config
        self.dim = cfg.dim
        emb_dim = cfg.dim * 4
        g = cfg.norm_groups
        attn_args = (use_sdpa, attention_chunk)

        def spatial_and_temporal(ch: int) -> List[nn.Module]:
            return [SpatialTransformer(ch, ch // cfg.head_dim, cfg.head_dim, cfg.context_dim, g, *attn_args),
                    TemporalTransformer(ch, ch // cfg.head_dim, cfg.head_dim, g, *attn_args)]

        self.time_embed = nn.Sequential(nn.Linear(cfg.dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        # encoder: stem (conv + temporal transformer of num_heads x head_dim), then levels
        self.input_blocks = nn.ModuleList([LayerStack(
            InputConv(cfg.in_dim, cfg.dim, 3, padding=1),
            TemporalTransformer(cfg.dim, cfg.num_heads, cfg.head_dim, g, *attn_args))])
        skip_channels = [cfg.dim]
        scale = 1.0
        enc_dims = [cfg.dim * m for m in (1,) + tuple(cfg.dim_mult)]
        last = len(cfg.dim_mult) - 1
        ch = cfg.dim
        for level, (c_in, c_out) in enumerate(zip(enc_dims[:-1], enc_dims[1:])):
            for j in range(cfg.num_res_blocks):
                layers: List[nn.Module] = [ResBlock(c_in, emb_dim, c_out, g)]
                if scale in cfg.attn_scales:
                    layers += spatial_and_temporal(c_out)
                c_in = c_out
                self.input_blocks.append(LayerStack(*layers))
                skip_channels.append(c_out)
                if level != last and j == cfg.num_res_blocks - 1:
                    self.input_blocks.append(Downsample(c_out))
                    skip_channels.append(c_out)
                    scale /= 2.0
            ch = c_out

        self.middle_block = LayerStack(ResBlock(ch, emb_dim, ch, g), *spatial_and_temporal(ch),
                                       ResBlock(ch, emb_dim, ch, g))

        # decoder: num_res_blocks + 1 blocks per level, each consuming one skip connection
        self.output_blocks = nn.ModuleList()
        dec_dims = [cfg.dim * m for m in (cfg.dim_mult[-1],) + tuple(cfg.dim_mult[::-1])]
        for level, (c_in, c_out) in enumerate(zip(dec_dims[:-1], dec_dims[1:])):
            for j in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(c_in + skip_channels.pop(), emb_dim, c_out, g)]
                if scale in cfg.attn_scales:
                    layers += spatial_and_temporal(c_out)
                c_in = c_out
                if level != last and j == cfg.num_res_blocks:
                    layers.append(Upsample(c_out))
                    scale *= 2.0
                self.output_blocks.append(LayerStack(*layers))
            ch = c_out

        self.out = nn.Sequential(nn.GroupNorm(g, ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_dim, 3, padding=1))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = sample.shape
        emb = self.time_embed(timestep_embedding(timestep, self.dim).to(sample.dtype))
        emb = emb.repeat_interleave(f, dim=0)                                   # [B*F, 4*dim]
        context = encoder_hidden_states.to(sample.dtype).repeat_interleave(f, dim=0)  # [B*F, 77, D]
        x = _fold(sample)
        skips: List[torch.Tensor] = []
        for block in self.input_blocks:
            x = block(x, emb, context, f)
            skips.append(x)
        x = self.middle_block(x, emb, context, f)
        for block in self.output_blocks:
            skip = skips.pop()
            # no-op for sizes the upstream model supports; cuts the extra row/column otherwise
            x = x[:, :, :skip.shape[2], :skip.shape[3]]
            x = block(torch.cat([x, skip], dim=1), emb, context, f)
        return _unfold(self.out(x), f)
