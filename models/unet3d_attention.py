"""Attention building blocks of the ModelScope UNet3D (diffusers 0.27 naming), spec §2.5 and §3.

* :class:`Attention` – multi-head attention with ``to_q``/``to_k``/``to_v``/``to_out.0`` (diffusers ``Attention``);
  optionally carries the APM mixing parameters ``conv``, ``conv_ln``, ``alpha`` (StreamingT2V
  ``attention_processor.Attention``) and applies them with the xformers-processor semantics (pitfall G3).
* :class:`FeedForward` – GEGLU feed-forward (``ff.net.0.proj``, ``ff.net.2``).
* :class:`BasicTransformerBlock` – norm1/attn1, norm2/attn2, norm3/ff.
* :class:`Transformer2DModel` – spatial transformer over H·W tokens per frame (linear projections).
* :class:`TransformerTemporalModel` – temporal transformer over F tokens per pixel (two self-attentions).

Attention is written out as softmax(Q Kᵀ / sqrt(d)) V so exported graphs only use libtorch-1.13 ops; torch 2's
``F.scaled_dot_product_attention`` can be chosen with ``use_sdpa=True`` (torch >= 2.0 only).
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .apm import apm_mix_context


class MathAttentionCore(nn.Module):
    """softmax(q kᵀ · scale) v on [N, H, L, d] tensors (ops available in libtorch 1.13)."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.scale = 1.0 / math.sqrt(head_dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        return torch.matmul(scores.softmax(dim=-1), v)


class SdpaAttentionCore(nn.Module):
    """``F.scaled_dot_product_attention`` core (torch >= 2.0; graphs then need libtorch >= 2.0)."""

    def __init__(self, head_dim: int):
        super().__init__()
        if not hasattr(F, "scaled_dot_product_attention"):
            raise RuntimeError("use_sdpa=True needs torch >= 2.0 (F.scaled_dot_product_attention)")
        self.head_dim = head_dim

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


def make_attention_core(head_dim: int, use_sdpa: bool) -> nn.Module:
    return SdpaAttentionCore(head_dim) if use_sdpa else MathAttentionCore(head_dim)


class Attention(nn.Module):
    """Multi-head (cross-)attention, diffusers names ``to_q``, ``to_k``, ``to_v``, ``to_out.0``.

    ``forward(hidden [N, L, C], context [Nc, T, D] or None) -> [N, L, C]``.

    When ``context`` has fewer rows than ``hidden`` (``N = Nc·G``, rows B-major), every group of G consecutive query
    rows attends to the same context row. This is how per-frame repeated text context is handled without
    materialising the repeat: for [B·F, H·W, C] queries and [B, T, D] context, queries are viewed as [B, F·H·W, C].
    This is exactly equivalent to repeating the context per frame (softmax is over keys only).

    APM mixing (``apm_mixing=True``, spec §3, pitfall G3): ``conv`` Conv1d(text+image tokens -> text tokens, k=3,
    padding same), ``conv_ln`` LayerNorm(D), ``alpha`` scalar init 0. Keys/values come from
    ``ctx[:, :77] + SiLU(alpha) · LN(conv(ctx))`` as in StreamingT2V's ``XFormersAttnProcessor`` (not the raw 93 tokens).
    """

    def __init__(self, query_dim: int, heads: int, dim_head: int, cross_attention_dim: Optional[int] = None,
                 bias: bool = False, apm_mixing: bool = False, text_tokens: int = 77, image_tokens: int = 16,
                 use_sdpa: bool = False):
        super().__init__()
        inner = heads * dim_head
        kv_dim = cross_attention_dim if cross_attention_dim is not None else query_dim
        self.heads = heads
        self.dim_head = dim_head
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(kv_dim, inner, bias=bias)
        self.to_v = nn.Linear(kv_dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(0.0)])
        self.core = make_attention_core(dim_head, use_sdpa)
        self.text_tokens = text_tokens
        if apm_mixing:
            if cross_attention_dim is None:
                raise ValueError("APM mixing only exists on cross-attention (attn2) layers")
            # padding=1 == padding="same" for kernel 3, stride 1 (same weights, same output).
            self.conv = nn.Conv1d(text_tokens + image_tokens, text_tokens, kernel_size=3, padding=1)
            self.conv_ln = nn.LayerNorm(kv_dim)
            self.alpha = nn.Parameter(torch.tensor(0.0))
        else:
            self.conv = None
            self.conv_ln = None

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        n, l, _ = x.shape
        return x.reshape(n, l, self.heads, self.dim_head).permute(0, 2, 1, 3)

    def forward(self, hidden: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        n, l, c = hidden.shape
        if context is None:
            ctx = hidden
        else:
            ctx = context
            if self.conv is not None:
                # spec §3: [text77 ; img16] -> text77 + SiLU(alpha) · LN(Conv1d(ctx93)); None branch is pruned
                ctx = apm_mix_context(ctx, self.conv.weight, self.conv.bias, self.conv_ln.weight,
                                      self.conv_ln.bias, self.conv_ln.eps, self.alpha, self.text_tokens)
        q = self.to_q(hidden)
        k = self.to_k(ctx)
        v = self.to_v(ctx)
        rows = k.shape[0]
        if rows != n:
            q = q.reshape(rows, (n // rows) * l, q.shape[-1])
        out = self.core(self._split_heads(q), self._split_heads(k), self._split_heads(v))
        out = out.permute(0, 2, 1, 3).reshape(n, l, self.heads * self.dim_head)
        out = self.to_out[0](out)
        return self.to_out[1](out)


class GEGLU(nn.Module):
    """``proj`` Linear(dim, 2·inner); out = a · GELU(gate) (exact erf GELU)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    """``net.0`` GEGLU(dim -> 4·dim), ``net.1`` Dropout, ``net.2`` Linear(4·dim -> dim)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.net:
            x = m(x)
        return x


class BasicTransformerBlock(nn.Module):
    """Pre-LN transformer block: x += attn1(norm1 x); x += attn2(norm2 x, ctx); x += ff(norm3 x).

    ``cross_attention_dim=None`` makes attn2 a second self-attention (``double_self_attention``, temporal layers).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, cross_attention_dim: Optional[int],
                 apm_mixing: bool = False, text_tokens: int = 77, image_tokens: int = 16, use_sdpa: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head, None, use_sdpa=use_sdpa)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, dim_head, cross_attention_dim, apm_mixing=apm_mixing,
                               text_tokens=text_tokens, image_tokens=image_tokens, use_sdpa=use_sdpa)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    """Spatial transformer (``use_linear_projection=True``): per frame over its H·W tokens.

    ``forward(x [B·F, C, H, W], context [B, T, D]) -> [B·F, C, H, W]``; GroupNorm eps 1e-6.
    """

    def __init__(self, channels: int, head_dim: int, cross_attention_dim: int, groups: int,
                 apm_mixing: bool = False, text_tokens: int = 77, image_tokens: int = 16, use_sdpa: bool = False):
        super().__init__()
        heads = channels // head_dim
        inner = heads * head_dim
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList([
            BasicTransformerBlock(inner, heads, head_dim, cross_attention_dim, apm_mixing=apm_mixing,
                                  text_tokens=text_tokens, image_tokens=image_tokens, use_sdpa=use_sdpa)])
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        residual = x
        x = self.norm(x).permute(0, 2, 3, 1).reshape(n, h * w, c)
        x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, context)
        x = self.proj_out(x)
        return x.reshape(n, h, w, c).permute(0, 3, 1, 2) + residual


class TransformerTemporalModel(nn.Module):
    """Temporal transformer: per pixel over the F frames (two self-attentions, no context).

    ``forward(x [B·F, C, H, W], num_frames=F) -> [B·F, C, H, W]``; GroupNorm eps 1e-6 over (C, F, H, W).
    Also used as ``transformer_in`` (8 heads x head_dim, inner width may differ from C).
    """

    def __init__(self, channels: int, heads: int, head_dim: int, groups: int, use_sdpa: bool = False):
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList([
            BasicTransformerBlock(inner, heads, head_dim, None, use_sdpa=use_sdpa)])
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, c, h, w = x.shape
        b = bf // num_frames
        residual = x
        t = x.reshape(b, num_frames, c, h, w).permute(0, 2, 1, 3, 4)      # [B, C, F, H, W]
        t = self.norm(t)
        t = t.permute(0, 3, 4, 2, 1).reshape(b * h * w, num_frames, c)    # [B·H·W, F, C]
        t = self.proj_in(t)
        for block in self.transformer_blocks:
            t = block(t, None)
        t = self.proj_out(t)
        t = t.reshape(b, h, w, num_frames, c).permute(0, 3, 4, 1, 2).reshape(bf, c, h, w)
        return t + residual
