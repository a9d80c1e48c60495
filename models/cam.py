"""CAM feature extractor (spec §2.1–§2.3): StreamingT2V ``ControlNetModel`` (checkpoint prefix ``unet.``).

A trainable copy of the UNet encoder (conv_in, time_embedding, transformer_in, down_blocks, mid_block; no up
path) run on the noisy latents of window positions 0..7, plus the pixel-space conditioning-frame encoder
``controlnet_cond_embedding`` whose output is added after ``transformer_in`` (Merger "addition", frame i <-> frame i).
``controlnet_down_blocks`` / ``controlnet_mid_block`` are ``nn.Identity`` (zero_conv_mode "Identity") and the
Merger has no parameters, so neither appears here. The context is text only (first 77 tokens,
``use_image_tokens_ctrl=False``) and no APM mixing exists in the CAM.

The injector (13 mergers) lives in the base UNet, see ``cam_merger.py`` / ``unet3d.py``.
"""
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .configs_unet import CAMConfig, UNet3DConfig
from .unet3d import fold_frames, time_features, make_block_spec, make_down_blocks, make_stem
from .unet3d_blocks import UNetMidBlock3DCrossAttn


class ControlNetConditioningEmbedding(nn.Module):
    """Frame encoder E_cond (spec §2.2): 3x3 convs each followed by SiLU, conv_out without activation.

    conv_in 3->c0; blocks: [c0->c0, c0->c1 (s2), c1->c1, c1->c2 (s2), c2->c2, c2->c3 (s2)]; conv_out c3->C (zero init).
    ``forward(frames [N, 3, H, W] in [-1,1]) -> [N, C, H/8, W/8]``. Full: 32,96,256,512 -> 320 (3,587,488 params).
    """

    def __init__(self, out_channels: int, channels: Tuple[int, ...], in_channels: int = 3):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        blocks = []
        for i in range(len(channels) - 1):
            blocks.append(nn.Conv2d(channels[i], channels[i], 3, padding=1))
            blocks.append(nn.Conv2d(channels[i], channels[i + 1], 3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.conv_in(x))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)


class CAMEncoder(nn.Module):
    """``forward(sample [B,4,F,h,w], timestep [B], text_context [B,T,D], cond_frames [B,3,Fc,H,W])``
    ``-> (skips: 12 x [B·Fc, C, h_i, w_i], mid [B·Fc, C_last, h/8, w/8])``.

    Only the first ``Fc`` (=8) latent frames of ``sample`` are used and only the first 77 context tokens.
    """

    def __init__(self, cfg: UNet3DConfig, cam: CAMConfig, use_sdpa: bool = False):
        super().__init__()
        self.num_cond_frames = cam.num_cond_frames
        self.text_tokens = cfg.text_tokens
        self.time_dim = cfg.block_out_channels[0]
        self.conv_in, self.time_embedding, self.transformer_in = make_stem(cfg, use_sdpa)
        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(cfg.block_out_channels[0], cam.cond_channels)
        spec = make_block_spec(cfg, False, use_sdpa)
        self.down_blocks = make_down_blocks(cfg, spec)
        self.mid_block = UNetMidBlock3DCrossAttn(spec, cfg.block_out_channels[-1])

    @torch.jit.ignore
    def copy_from_unet(self, unet: nn.Module) -> None:
        """``ControlNetModel.from_unet``: copy conv_in, time_embedding, transformer_in, down_blocks, mid_block.

        APM mixing parameters of the base UNet (absent in the CAM) are skipped, as the official non-strict copy does.
        """
        for name in ("conv_in", "time_embedding", "transformer_in", "down_blocks", "mid_block"):
            src = getattr(unet, name).state_dict()
            dst = getattr(self, name)
            own = dst.state_dict()
            dst.load_state_dict({k: v for k, v in src.items() if k in own}, strict=True)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, text_context: torch.Tensor,
                cond_frames: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
        fc = self.num_cond_frames
        sample = sample[:, :, :fc]
        b = sample.shape[0]
        f = sample.shape[2]
        context = text_context[:, :self.text_tokens]
        tfeat = time_features(timestep, b, self.time_dim).to(sample.dtype)
        temb = self.time_embedding(tfeat).repeat_interleave(f, dim=0)       # [B·Fc, E]
        x = self.conv_in(fold_frames(sample))
        if f > 1:
            x = self.transformer_in(x, f)
        x = x + self.controlnet_cond_embedding(fold_frames(cond_frames))   # Merger "addition" (spec §2.3)
        skips: List[torch.Tensor] = [x]
        for block in self.down_blocks:
            x, s = block(x, temb, context, f)
            skips.extend(s)
        x = self.mid_block(x, temb, context, f)
        return skips, x
