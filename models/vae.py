"""SD-style VAE (AutoencoderKL) with per-frame video wrappers (spec §1.6, §1.8, §5, G6).

One definition serves both VAEs of the pipeline:

* the ModelScope VAE of stages 1/2 (diffusers ``AutoencoderKL``, weights already in this layout), and
* the SD 2.1 VAE of stage 3 (``first_stage_model.*`` of ``v2-1_512-ema-pruned.ckpt``, ldm layout; converted
  by ``state_dict_keys_aux.vae_from_ldm``).

Parameter names follow diffusers 0.27: ``encoder.conv_in``, ``encoder.down_blocks.N.{resnets,downsamplers}``,
``encoder.mid_block.{resnets,attentions}``, ``encoder.conv_norm_out``, ``encoder.conv_out``, ``quant_conv``,
``post_quant_conv``, ``decoder.conv_in``, ``decoder.mid_block``, ``decoder.up_blocks.N.{resnets,upsamplers}``,
``decoder.conv_norm_out``, ``decoder.conv_out``. The only attention is the single-head self-attention
of the mid blocks (``group_norm``, ``to_q``, ``to_k``, ``to_v``, ``to_out.0``).

Exported wrappers (latents are ``[B, C, F, H, W]`` everywhere; frames are folded into the batch inside):

* ``VAEEncoder``: video ``[B, 3, F, H, W]`` in [-1, 1] -> ``(mean, std)``, both ``[B, 4, F, H/8, W/8]``
  and both already multiplied by 0.18215. The caller samples ``mean + std * eps`` (stage 3 samples the
  posterior, G6; ``mean`` alone is the posterior mode).
* ``VAEDecoder``: scaled latents ``[B, 4, F, h, w]`` -> video ``[B, 3, F, 8h, 8w]`` in about [-1, 1]
  (divides by 0.18215 first; not clamped).
"""

import math
from typing import Final, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .configs_aux import VAEConfig


class ResnetBlock2D(nn.Module):
    """GN-SiLU-Conv3x3, GN-SiLU-Conv3x3, residual (1x1 ``conv_shortcut`` when channels change)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels == out_channels:
            self.conv_shortcut: nn.Module = nn.Identity()
        else:
            self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.conv_shortcut(x) + h


class MidAttention(nn.Module):
    """Single-head self-attention over all H*W positions, scale 1/sqrt(C), residual.

    Scores are formed per chunk of frames so that at most ``max_scores`` elements exist at once
    (a 90x160 latent map has 14400 positions: 207M scores per frame).
    """

    max_scores: Final[int]
    use_sdpa: Final[bool]

    def __init__(self, channels: int, groups: int, eps: float, max_scores: int):
        super().__init__()
        self.max_scores = max_scores
        self.use_sdpa = False  # models.fused_attention switches it on before scripting (torch >= 2.0)
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C, H, W] -> same."""
        n, c, h, w = x.shape
        t = self.group_norm(x).reshape(n, c, h * w).transpose(1, 2)
        q, k, v = self.to_q(t), self.to_k(t), self.to_v(t)
        if self.use_sdpa:  # compile-time constant: not compiled when False (libtorch 1.13 has no SDPA)
            out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(C); fused kernels never form the scores
            for layer in self.to_out:
                out = layer(out)
            return out.transpose(1, 2).reshape(n, c, h, w) + x
        scale = 1.0 / math.sqrt(c)
        per_item = max(1, (h * w) * (h * w))
        step = max(1, self.max_scores // per_item)
        outs: List[torch.Tensor] = []
        for start in range(0, n, step):
            end = min(n, start + step)
            scores = torch.matmul(q[start:end], k[start:end].transpose(1, 2)) * scale
            probs = scores.float().softmax(dim=-1).to(v.dtype)   # diffusers: upcast_softmax=True
            outs.append(torch.matmul(probs, v[start:end]))
        out = torch.cat(outs, dim=0)
        for layer in self.to_out:
            out = layer(out)
        return out.transpose(1, 2).reshape(n, c, h, w) + x


class MidBlock2D(nn.Module):
    """resnets.0 -> attentions.0 -> resnets.1."""

    def __init__(self, channels: int, groups: int, eps: float, max_scores: int):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups, eps),
                                      ResnetBlock2D(channels, channels, groups, eps)])
        self.attentions = nn.ModuleList([MidAttention(channels, groups, eps, max_scores)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        for attention in self.attentions:
            x = attention(x)
        return self.resnets[1](x)


class Downsample2D(nn.Module):
    """Pad one zero row/column at the bottom/right, then a 3x3 stride-2 convolution (ldm/diffusers)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2D(nn.Module):
    """2x nearest resize, then a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class EncoderBlock(nn.Module):
    """``down_blocks.N``: resnets, then an optional downsampler (all levels but the last)."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, downsample: bool, groups: int, eps: float):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, groups, eps)
                                      for i in range(layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels)] if downsample else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for down in self.downsamplers:
            x = down(x)
        return x


class DecoderBlock(nn.Module):
    """``up_blocks.N``: layers_per_block + 1 resnets, then an optional upsampler."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, upsample: bool, groups: int, eps: float):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, groups, eps)
                                      for i in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)] if upsample else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for up in self.upsamplers:
            x = up(x)
        return x


class Encoder(nn.Module):
    """Image [N, 3, H, W] -> moments [N, 2*latent, H/2^(L-1), W/2^(L-1)] (mean and log-variance)."""

    def __init__(self, cfg: VAEConfig, max_scores: int):
        super().__init__()
        ch = cfg.block_out_channels
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([
            EncoderBlock(ch[max(i - 1, 0)], ch[i], cfg.layers_per_block, i < len(ch) - 1, g, eps)
            for i in range(len(ch))])
        self.mid_block = MidBlock2D(ch[-1], g, eps, max_scores)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=eps)
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    """Latent [N, latent, h, w] -> image [N, 3, h*2^(L-1), w*2^(L-1)]."""

    def __init__(self, cfg: VAEConfig, max_scores: int):
        super().__init__()
        rev = tuple(reversed(cfg.block_out_channels))
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        self.conv_in = nn.Conv2d(cfg.latent_channels, rev[0], 3, padding=1)
        self.mid_block = MidBlock2D(rev[0], g, eps, max_scores)
        self.up_blocks = nn.ModuleList([
            DecoderBlock(rev[max(i - 1, 0)], rev[i], cfg.layers_per_block + 1, i < len(rev) - 1, g, eps)
            for i in range(len(rev))])
        self.conv_norm_out = nn.GroupNorm(g, rev[-1], eps=eps)
        self.conv_out = nn.Conv2d(rev[-1], cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


def _fold_frames(video: torch.Tensor) -> torch.Tensor:
    """[B, C, F, H, W] -> [B*F, C, H, W] (B-major)."""
    b, c, f, h, w = video.shape
    return video.transpose(1, 2).reshape(b * f, c, h, w)


def _unfold_frames(x: torch.Tensor, batch: int) -> torch.Tensor:
    """[B*F, C, H, W] -> [B, C, F, H, W]."""
    n, c, h, w = x.shape
    return x.reshape(batch, n // batch, c, h, w).transpose(1, 2)


class VAEEncoder(nn.Module):
    """Per-frame posterior of a video. forward(video [B,3,F,H,W] in [-1,1]) -> (mean, std), each [B,4,F,H/8,W/8], scaled.

    ``frames_per_pass`` > 0 encodes that many frames at a time (the official code encodes one frame
    at a time at 1280x720); 0 encodes all frames in one pass.
    """

    scaling_factor: Final[float]
    frames_per_pass: Final[int]

    def __init__(self, encoder: Encoder, quant_conv: nn.Conv2d, scaling_factor: float, frames_per_pass: int = 0):
        super().__init__()
        self.encoder = encoder
        self.quant_conv = quant_conv
        self.scaling_factor = scaling_factor
        self.frames_per_pass = frames_per_pass

    def forward(self, video: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b = video.shape[0]
        frames = _fold_frames(video)
        step = frames.shape[0] if self.frames_per_pass <= 0 else self.frames_per_pass
        moments = torch.cat([self.quant_conv(self.encoder(chunk)) for chunk in torch.split(frames, step, dim=0)], 0)
        mean, logvar = moments.chunk(2, dim=1)
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))  # DiagonalGaussianDistribution
        return (_unfold_frames(mean, b) * self.scaling_factor,
                _unfold_frames(std, b) * self.scaling_factor)


class VAEDecoder(nn.Module):
    """Per-frame decode. forward(latents [B,4,F,h,w], scaled by 0.18215) -> video [B,3,F,8h,8w], about [-1,1], unclamped."""

    scaling_factor: Final[float]
    frames_per_pass: Final[int]

    def __init__(self, post_quant_conv: nn.Conv2d, decoder: Decoder, scaling_factor: float, frames_per_pass: int = 0):
        super().__init__()
        self.post_quant_conv = post_quant_conv
        self.decoder = decoder
        self.scaling_factor = scaling_factor
        self.frames_per_pass = frames_per_pass

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        b = latents.shape[0]
        z = _fold_frames(latents) / self.scaling_factor
        step = z.shape[0] if self.frames_per_pass <= 0 else self.frames_per_pass
        images = torch.cat([self.decoder(self.post_quant_conv(chunk)) for chunk in torch.split(z, step, dim=0)], 0)
        return _unfold_frames(images, b)


class AutoencoderKL(nn.Module):
    """The whole VAE, holding the weights in diffusers layout; ``video_encoder()``/``video_decoder()``
    return the exported wrappers, which share these submodules (state-dict keys stay the same)."""

    def __init__(self, config: VAEConfig = VAEConfig(), attention_chunk: int = 1 << 28):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config, attention_chunk)
        self.decoder = Decoder(config, attention_chunk)
        self.quant_conv = nn.Conv2d(2 * config.latent_channels, 2 * config.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(config.latent_channels, config.latent_channels, 1)

    def video_encoder(self, frames_per_pass: int = 0) -> VAEEncoder:
        return VAEEncoder(self.encoder, self.quant_conv, self.config.scaling_factor, frames_per_pass)

    def video_decoder(self, frames_per_pass: int = 0) -> VAEDecoder:
        return VAEDecoder(self.post_quant_conv, self.decoder, self.config.scaling_factor, frames_per_pass)
