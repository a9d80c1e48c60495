"""APM: appearance preservation module (spec §3).

* :func:`clip_preprocess` – kornia ``resize(x, 224, "bicubic", align_corners=True, antialias=True)`` (Gaussian
  pre-blur when downscaling), map [-1,1] -> [0,1], CLIP mean/std normalisation.
* :class:`OpenCLIPVisionTransformer` – OpenCLIP ViT visual tower (names ``conv1``, ``class_embedding``,
  ``positional_embedding``, ``ln_pre``, ``transformer.resblocks.N.{ln_1, attn.in_proj_weight, attn.in_proj_bias,
  attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}``, ``ln_post``, ``proj``); returns the pooled projected embedding
  (CLS -> ln_post -> proj).
* :class:`ImgEmbContextResampler` – mean over frames -> Linear(D, 1280) -> SiLU -> Linear(1280, 16·D) -> [B, 16, D].
* :class:`APMImageEncoder` – preprocessing + visual + resampler: ``forward(image [B,3,H,W] in [-1,1]) -> [B,16,D]``.
* :func:`apm_mix_context` – the per-attn2 token mixing of StreamingT2V's ``XFormersAttnProcessor`` (pitfall G3).
"""
import math
from collections import OrderedDict
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .configs_unet import CLIPVisionConfig, ResamplerConfig
from .state_dict_keys_unet import apm_from_checkpoint


def apm_mix_context(ctx: torch.Tensor, conv_w: torch.Tensor, conv_b: Optional[torch.Tensor],
                    ln_w: Optional[torch.Tensor], ln_b: Optional[torch.Tensor], ln_eps: float,
                    alpha: torch.Tensor, text_tokens: int) -> torch.Tensor:
    """ctx [N, 77+16, D] -> [N, 77, D] = ctx[:, :77] + SiLU(alpha) · LayerNorm(Conv1d_{93->77, k=3, same}(ctx)).

    The Conv1d treats tokens as channels and slides along the feature axis D (spec §3).
    """
    mixed = F.conv1d(ctx, conv_w, conv_b, 1, 1)
    mixed = F.layer_norm(mixed, [mixed.shape[-1]], ln_w, ln_b, ln_eps)
    return ctx[:, :text_tokens] + mixed * F.silu(alpha)


def _gaussian_blur_reflect(x: torch.Tensor, ks_h: int, ks_w: int, sigma_h: float, sigma_w: float) -> torch.Tensor:
    """kornia ``gaussian_blur2d(x, (ks_h, ks_w), (sigma_h, sigma_w), border_type="reflect", separable=True)``."""
    c = x.shape[1]
    xs = torch.arange(ks_w, dtype=x.dtype, device=x.device) - float(ks_w // 2)
    gw = torch.exp(-xs * xs / (2.0 * sigma_w * sigma_w))
    gw = gw / gw.sum()
    ys = torch.arange(ks_h, dtype=x.dtype, device=x.device) - float(ks_h // 2)
    gh = torch.exp(-ys * ys / (2.0 * sigma_h * sigma_h))
    gh = gh / gh.sum()
    pw = (ks_w - 1) // 2
    ph = (ks_h - 1) // 2
    x = F.conv2d(F.pad(x, [pw, pw, 0, 0], mode="reflect"), gw.reshape(1, 1, 1, ks_w).repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(F.pad(x, [0, 0, ph, ph], mode="reflect"), gh.reshape(1, 1, ks_h, 1).repeat(c, 1, 1, 1), groups=c)
    return x


def _odd_kernel(sigma: float) -> int:
    k = int(max(4.0 * sigma, 3.0))
    return k if k % 2 == 1 else k + 1


def clip_preprocess(x: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] in [-1,1] -> [B,3,size,size] CLIP-normalised (``FrozenOpenCLIPImageEmbedder.preprocess``)."""
    h = x.shape[2]
    w = x.shape[3]
    fh = float(h) / float(size)
    fw = float(w) / float(size)
    if max(fh, fw) > 1.0:  # kornia antialias: Gaussian blur with sigma = (factor-1)/2 before resampling
        sh = max((fh - 1.0) / 2.0, 0.001)
        sw = max((fw - 1.0) / 2.0, 0.001)
        x = _gaussian_blur_reflect(x, _odd_kernel(sh), _odd_kernel(sw), sh, sw)
    x = F.interpolate(x, size=[size, size], mode="bicubic", align_corners=True)
    x = (x + 1.0) / 2.0
    return (x - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1)


class CLIPAttention(nn.Module):
    """``nn.MultiheadAttention`` parameter layout: ``in_proj_weight`` [3W, W] (q;k;v), ``in_proj_bias``, ``out_proj``."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, l, w = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).reshape(n, l, 3, self.heads, self.head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)                                   # [3, N, heads, L, d]
        scores = torch.matmul(qkv[0], qkv[1].transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        out = torch.matmul(scores.softmax(dim=-1), qkv[2])
        return self.out_proj(out.permute(0, 2, 1, 3).reshape(n, l, w))


class ResidualAttentionBlock(nn.Module):
    """x += attn(ln_1 x); x += mlp(ln_2 x) with mlp = c_fc -> GELU (erf) -> c_proj."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.attn = CLIPAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(hidden, width))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class CLIPTransformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, mlp_ratio, eps) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.resblocks:
            x = blk(x)
        return x


class OpenCLIPVisionTransformer(nn.Module):
    """``forward(pixels [B,3,S,S] CLIP-normalised) -> [B, output_dim]`` (pooled CLS, ln_post, @ proj)."""

    def __init__(self, cfg: CLIPVisionConfig):
        super().__init__()
        grid = cfg.image_size // cfg.patch_size
        scale = cfg.width ** -0.5
        self.conv1 = nn.Conv2d(3, cfg.width, cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(cfg.width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, cfg.width))
        self.ln_pre = nn.LayerNorm(cfg.width, eps=cfg.ln_eps)
        self.transformer = CLIPTransformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_ratio, cfg.ln_eps)
        self.ln_post = nn.LayerNorm(cfg.width, eps=cfg.ln_eps)
        self.proj = nn.Parameter(scale * torch.randn(cfg.width, cfg.output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)                                        # [B, W, g, g]
        b, w = x.shape[0], x.shape[1]
        x = x.reshape(b, w, -1).permute(0, 2, 1)                 # [B, g², W]
        cls = self.class_embedding.reshape(1, 1, w).expand(b, 1, w).to(x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class ImgEmbContextResampler(nn.Module):
    """``context_embedding`` = Linear(D, inner), SiLU, Linear(inner, tokens·D).

    ``forward(emb [B, Fi, D]) -> [B, tokens, D]`` (mean over the Fi anchor frames first; Fi = 1 in inference).
    """

    def __init__(self, dim: int, cfg: ResamplerConfig):
        super().__init__()
        self.context_embedding = nn.Sequential(
            nn.Linear(dim, cfg.inner_dim), nn.SiLU(), nn.Linear(cfg.inner_dim, dim * cfg.num_tokens))
        self.num_tokens = cfg.num_tokens
        self.dim = dim

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        x = self.context_embedding(emb.mean(dim=1, keepdim=True))
        return x.reshape(-1, self.num_tokens, self.dim)


class APMImageEncoder(nn.Module):
    """Anchor image -> APM tokens: ``forward(image [B,3,H,W] in [-1,1]) -> tokens [B,16,D]`` (spec §3).

    The unconditional CFG tokens are this module applied to ``zeros`` (a mid-grey image, pitfall G5).
    Submodules: ``visual`` (checkpoint ``image_encoder.model.visual.*``) and ``resampler`` (``resampler.*``).
    """

    def __init__(self, clip: CLIPVisionConfig, resampler: ResamplerConfig):
        super().__init__()
        self.image_size = clip.image_size
        self.register_buffer("mean", torch.tensor(list(clip.mean)), persistent=False)
        self.register_buffer("std", torch.tensor(list(clip.std)), persistent=False)
        self.visual = OpenCLIPVisionTransformer(clip)
        self.resampler = ImgEmbContextResampler(clip.output_dim, resampler)

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] in [-1,1] -> pooled projected CLIP embedding [B, D]."""
        return self.visual(clip_preprocess(image, self.image_size, self.mean, self.std))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.resampler(self.embed(image).unsqueeze(1))

    @torch.jit.ignore
    def load_streaming_t2v_state_dict(self, ckpt_state_dict, strict: bool = True):
        """Load ``image_encoder.model.visual.*`` and ``resampler.*`` of ``streaming_t2v.ckpt["state_dict"]``."""
        return self.load_state_dict(apm_from_checkpoint(ckpt_state_dict), strict=strict)
