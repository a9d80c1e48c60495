"""ModelScope ``UNet3DConditionModel`` (diffusers 0.27 layout), optionally with the StreamingT2V additions.

* Stage 1 (``damo-vilab/text-to-video-ms-1.7b`` ``unet/``): ``UNet3DConditionModel(cfg)``; its ``state_dict`` keys are
  the diffusers keys (conv_in, time_embedding.linear_1/2, transformer_in.*, down_blocks.*, mid_block.*,
  up_blocks.*, conv_norm_out, conv_out; ``time_proj`` has no parameters).
* Stage 2 base UNet (``streaming_t2v.ckpt`` ``base_model.*``): ``UNet3DConditionModel(cfg, cam=cam_cfg,
  apm_mixing=True)`` adds the 13 CAM mergers (``cross_attention_merger_down_blocks.{0..11}``,
  ``cross_attention_merger_mid_block``, spec §2.4) and the APM mixing parameters ``conv``/``conv_ln``/``alpha`` on the
  16 spatial ``attn2`` modules (spec §3).

Layout: latents [B, C, F, H, W]; inside, frames are folded B-major into [B·F, C, H, W]. The text context
[B, T, D] is shared by all F frames of a batch row (the official code repeats it per frame; the attention layers
do the equivalent without materialising the repeat, see ``unet3d_attention.Attention``).
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .cam_merger import CAMMerger
from .configs_unet import CAMConfig, UNet3DConfig
from .state_dict_keys_unet import stage1_from_diffusers
from .unet3d_attention import TransformerTemporalModel
from .unet3d_blocks import (BlockSpec, CrossAttnDownBlock3D, CrossAttnUpBlock3D, DownBlock3D, UNetMidBlock3DCrossAttn,
                            UpBlock3D)
from .unet3d_layers import TimestepEmbedding, timestep_embedding


def make_block_spec(cfg: UNet3DConfig, apm_mixing: bool, use_sdpa: bool) -> BlockSpec:
    return BlockSpec(cfg.time_embed_dim, cfg.norm_num_groups, cfg.norm_eps, cfg.attention_head_dim,
                     cfg.cross_attention_dim, cfg.temporal_conv_groups, apm_mixing, cfg.text_tokens,
                     cfg.image_tokens, use_sdpa)


def make_down_blocks(cfg: UNet3DConfig, spec: BlockSpec) -> nn.ModuleList:
    """CrossAttnDownBlock3D x (n-1) + DownBlock3D; every block but the last downsamples."""
    blocks = []
    chans = cfg.block_out_channels
    cin = chans[0]
    for i, cout in enumerate(chans):
        last = i == len(chans) - 1
        cls = DownBlock3D if last else CrossAttnDownBlock3D
        blocks.append(cls(spec, cin, cout, cfg.layers_per_block, not last))
        cin = cout
    return nn.ModuleList(blocks)


def make_stem(cfg: UNet3DConfig, use_sdpa: bool):
    """conv_in, time_embedding, transformer_in (8 heads x head_dim over block_out[0])."""
    c0 = cfg.block_out_channels[0]
    conv_in = nn.Conv2d(cfg.in_channels, c0, 3, padding=1)
    time_embedding = TimestepEmbedding(c0, cfg.time_embed_dim)
    transformer_in = TransformerTemporalModel(c0, cfg.transformer_in_heads, cfg.attention_head_dim,
                                              cfg.norm_num_groups, use_sdpa=use_sdpa)
    return conv_in, time_embedding, transformer_in


def time_features(timestep: torch.Tensor, batch: int, dim: int) -> torch.Tensor:
    """timestep [B] (or [1]) float -> sinusoidal ``time_proj`` features [B, C0] (fed to ``time_embedding``)."""
    return timestep_embedding(timestep.reshape(-1).expand([batch]), dim)


def fold_frames(sample: torch.Tensor) -> torch.Tensor:
    """[B, C, F, H, W] -> [B·F, C, H, W] (row b·F + f)."""
    b, c, f, h, w = sample.shape
    return sample.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


class UNet3DConditionModel(nn.Module):
    """ModelScope UNet3D. ``forward(sample [B,4,F,h,w], timestep [B], encoder_hidden_states [B,T,D]) -> eps``.

    ``cam`` (a :class:`CAMConfig`) adds the 13 CAM mergers, ``apm_mixing=True`` the 16 APM mixers; then
    :meth:`forward_with_cam` is the stage-2 entry point (spec §2.4).
    """

    def __init__(self, cfg: UNet3DConfig, cam: Optional[CAMConfig] = None, apm_mixing: bool = False,
                 use_sdpa: bool = False):
        super().__init__()
        self.time_dim = cfg.block_out_channels[0]
        self.conv_in, self.time_embedding, self.transformer_in = make_stem(cfg, use_sdpa)
        spec = make_block_spec(cfg, apm_mixing, use_sdpa)
        self.down_blocks = make_down_blocks(cfg, spec)

        chans = cfg.block_out_channels
        self.mid_block = UNetMidBlock3DCrossAttn(spec, chans[-1])

        rev = list(reversed(chans))
        ups = []
        prev = rev[0]
        for i, cout in enumerate(rev):
            cin = rev[min(i + 1, len(rev) - 1)]
            last = i == len(rev) - 1
            cls = UpBlock3D if i == 0 else CrossAttnUpBlock3D
            ups.append(cls(spec, cin, cout, prev, cfg.layers_per_block + 1, not last))
            prev = cout
        self.up_blocks = nn.ModuleList(ups)
        self.up_skip_counts: List[int] = [cfg.layers_per_block + 1] * len(chans)

        self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, chans[0], eps=cfg.norm_eps)
        self.conv_out = nn.Conv2d(chans[0], cfg.out_channels, 3, padding=1)

        if cam is not None:
            # spec §2.4: 12 down mergers (skips s0..s11) + 1 mid merger, zero-initialised proj_out.
            mk = lambda c: CAMMerger(c, cam.merger_head_dim, cam.merger_groups, cam.merger_eps, use_sdpa)  # noqa: E731
            self.cross_attention_merger_down_blocks = nn.ModuleList([mk(c) for c in cfg.skip_channels])
            self.cross_attention_merger_mid_block = mk(chans[-1])
        else:
            self.cross_attention_merger_down_blocks = None
            self.cross_attention_merger_mid_block = None

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """Plain UNet (stage 1): sample [B,4,F,h,w], timestep [B] float, context [B,T,D] -> eps [B,4,F,h,w]."""
        return self._run(sample, timestep, encoder_hidden_states, None, None)

    def forward_with_cam(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                         cam_skips: List[torch.Tensor], cam_mid: torch.Tensor) -> torch.Tensor:
        """Stage-2 base UNet: ``cam_skips`` = 12 CAM features [B·Fc, C, H, W], ``cam_mid`` [B·Fc, C, H, W]."""
        return self._run(sample, timestep, encoder_hidden_states, cam_skips, cam_mid)

    @torch.jit.ignore
    def load_diffusers_state_dict(self, state_dict, strict: bool = True):
        """Load ModelScope ``unet/diffusion_pytorch_model.bin`` (diffusers names) into a plain stage-1 UNet."""
        return self.load_state_dict(stage1_from_diffusers(state_dict), strict=strict)

    def _run(self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
             cam_skips: Optional[List[torch.Tensor]], cam_mid: Optional[torch.Tensor]) -> torch.Tensor:
        b, _, f, h, w = sample.shape
        tfeat = time_features(timestep, b, self.time_dim).to(sample.dtype)   # diffusers casts t_emb to the model dtype
        temb = self.time_embedding(tfeat).repeat_interleave(f, dim=0)       # [B·F, E]
        x = self.conv_in(fold_frames(sample))
        if f > 1:
            x = self.transformer_in(x, f)

        skips: List[torch.Tensor] = [x]
        for block in self.down_blocks:
            x, s = block(x, temb, context, f)
            skips.extend(s)

        if cam_skips is not None:
            # spec §2.4: each skip x_SC <- x_SC + merger(x_SC, x_CAM); only the up path sees the merged skips.
            merged: List[torch.Tensor] = []
            if self.cross_attention_merger_down_blocks is not None:
                i = 0
                for merger in self.cross_attention_merger_down_blocks:
                    merged.append(merger(skips[i], cam_skips[i], f))
                    i += 1
            else:
                raise RuntimeError("this UNet has no CAM mergers (construct it with cam=...)")
            skips = merged

        x = self.mid_block(x, temb, context, f)
        if cam_mid is not None:
            if self.cross_attention_merger_mid_block is not None:
                x = self.cross_attention_merger_mid_block(x, cam_mid, f)

        j = 0
        for block in self.up_blocks:
            n = self.up_skip_counts[j]
            j += 1
            split = len(skips) - n
            res = skips[split:]
            skips = skips[:split]
            if split > 0:
                size = [skips[-1].shape[2], skips[-1].shape[3]]
            else:
                size = [x.shape[2] * 2, x.shape[3] * 2]   # unused: the last up block has no upsampler
            x = block(x, res, temb, context, f, size)

        x = self.conv_out(F.silu(self.conv_norm_out(x)))
        return x.reshape(b, f, x.shape[1], h, w).permute(0, 2, 1, 3, 4)
