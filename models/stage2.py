"""Stage-2 denoiser: base UNet + CAM + APM mixing, one forward per sampler step (spec §1.6, §2, §3).

``Stage2UNet.forward(sample [B,4,16,h,w], timestep [B], encoder_hidden_states [B,93,D], cond_frames [B,3,8,H,W])
-> eps [B,4,16,h,w]``:

1. CAM (``cam``) on ``sample[:, :, :8]`` with the 77 text tokens and the pixel conditioning frames in [-1,1]
   -> 12 skip features + mid feature at 8 frames (spec §2.3).
2. Base UNet (``base_model``) on all 16 frames with the 93-token context; the 16 spatial attn2 layers mix the
   context with APM (spec §3); the 13 mergers inject the CAM features into the skips / mid output (spec §2.4).

CFG is the caller's job (batch the unconditional and conditional halves; identical ``cond_frames`` in both,
pitfall G15). Parameter names follow ``streaming_t2v.ckpt["state_dict"]``: ``base_model.*`` -> ``base_model``,
``unet.*`` -> ``cam`` (see ``state_dict_keys_unet.py``).
"""
from typing import Dict

import torch
from torch import nn

from .cam import CAMEncoder
from .configs_unet import StreamingT2VNetConfig
from .state_dict_keys_unet import stage2_from_checkpoint
from .unet3d import UNet3DConditionModel


class Stage2UNet(nn.Module):
    """Base UNet (with 13 CAM mergers + 16 APM mixers) and the CAM encoder."""

    def __init__(self, cfg: StreamingT2VNetConfig, use_sdpa: bool = False, cam_from_base: bool = True):
        super().__init__()
        self.base_model = UNet3DConditionModel(cfg.unet, cam=cfg.cam, apm_mixing=True, use_sdpa=use_sdpa)
        self.cam = CAMEncoder(cfg.unet, cfg.cam, use_sdpa=use_sdpa)
        if cam_from_base:  # ControlNetModel.from_unet (weights are overwritten by the checkpoint anyway)
            self.cam.copy_from_unet(self.base_model)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                cond_frames: torch.Tensor) -> torch.Tensor:
        cam_skips, cam_mid = self.cam(sample, timestep, encoder_hidden_states, cond_frames)
        return self.base_model.forward_with_cam(sample, timestep, encoder_hidden_states, cam_skips, cam_mid)

    @torch.jit.ignore
    def load_streaming_t2v_state_dict(self, ckpt_state_dict: Dict[str, torch.Tensor], strict: bool = True):
        """Load the ``base_model.*`` and ``unet.*`` entries of ``streaming_t2v.ckpt["state_dict"]``.

        Other prefixes (``resampler.``, ``image_encoder.``, ``vae.``, ``text_encoder.``) are ignored here; load the
        first two into :class:`~models.apm.APMImageEncoder` with ``apm_from_checkpoint``.
        """
        return self.load_state_dict(stage2_from_checkpoint(ckpt_state_dict), strict=strict)
