"""Down / mid / up blocks of the ModelScope UNet3D (diffusers 0.27 ``unet_3d_blocks`` names), spec §2.5.

Every layer is ResNet -> TemporalConv -> spatial Transformer2D -> temporal transformer (mid block: ResNet ->
TemporalConv, then [Transformer2D -> temporal transformer -> ResNet -> TemporalConv]). Activations are
[B·F, C, H, W] (B-major); ``context`` is the *unrepeated* [B, T, D] text(+image) context (see ``Attention``).
As in StreamingT2V's custom blocks, temporal layers are skipped when ``num_frames == 1``.

All down blocks share one forward signature and all up blocks another, so the UNet can loop over them in
TorchScript.
"""
from typing import List, Tuple

import torch
from torch import nn

from .unet3d_attention import Transformer2DModel, TransformerTemporalModel
from .unet3d_layers import Downsample2D, ResnetBlock2D, TemporalConvLayer, Upsample2D


class BlockSpec:
    """Shared hyper-parameters handed to every block (not a module)."""

    def __init__(self, temb_channels: int, groups: int, eps: float, head_dim: int, cross_attention_dim: int,
                 temporal_conv_groups: int, apm_mixing: bool, text_tokens: int, image_tokens: int, use_sdpa: bool):
        self.temb_channels = temb_channels
        self.groups = groups
        self.eps = eps
        self.head_dim = head_dim
        self.cross_attention_dim = cross_attention_dim
        self.temporal_conv_groups = temporal_conv_groups
        self.apm_mixing = apm_mixing
        self.text_tokens = text_tokens
        self.image_tokens = image_tokens
        self.use_sdpa = use_sdpa

    def resnet(self, cin: int, cout: int) -> ResnetBlock2D:
        return ResnetBlock2D(cin, cout, self.temb_channels, self.groups, self.eps)

    def temp_conv(self, c: int) -> TemporalConvLayer:
        return TemporalConvLayer(c, self.temporal_conv_groups)

    def attention(self, c: int) -> Transformer2DModel:
        return Transformer2DModel(c, self.head_dim, self.cross_attention_dim, self.groups,
                                  apm_mixing=self.apm_mixing, text_tokens=self.text_tokens,
                                  image_tokens=self.image_tokens, use_sdpa=self.use_sdpa)

    def temp_attention(self, c: int) -> TransformerTemporalModel:
        return TransformerTemporalModel(c, c // self.head_dim, self.head_dim, self.groups, use_sdpa=self.use_sdpa)


class CrossAttnDownBlock3D(nn.Module):
    """``forward(x, temb, context, num_frames) -> (x_out, [skips])``: one skip per layer (+1 if downsampling)."""

    def __init__(self, spec: BlockSpec, cin: int, cout: int, num_layers: int, add_downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList([spec.resnet(cin if i == 0 else cout, cout) for i in range(num_layers)])
        self.temp_convs = nn.ModuleList([spec.temp_conv(cout) for _ in range(num_layers)])
        self.attentions = nn.ModuleList([spec.attention(cout) for _ in range(num_layers)])
        self.temp_attentions = nn.ModuleList([spec.temp_attention(cout) for _ in range(num_layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(cout)]) if add_downsample else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor,
                num_frames: int) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        skips: List[torch.Tensor] = []
        for resnet, temp_conv, attn, temp_attn in zip(self.resnets, self.temp_convs, self.attentions,
                                                      self.temp_attentions):
            x = resnet(x, temb)
            if num_frames > 1:
                x = temp_conv(x, num_frames)
            x = attn(x, context)
            if num_frames > 1:
                x = temp_attn(x, num_frames)
            skips.append(x)
        if self.downsamplers is not None:
            for down in self.downsamplers:
                x = down(x)
            skips.append(x)
        return x, skips


class DownBlock3D(nn.Module):
    """ResNet + TemporalConv layers only; ``context`` is accepted and ignored (uniform signature)."""

    def __init__(self, spec: BlockSpec, cin: int, cout: int, num_layers: int, add_downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList([spec.resnet(cin if i == 0 else cout, cout) for i in range(num_layers)])
        self.temp_convs = nn.ModuleList([spec.temp_conv(cout) for _ in range(num_layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(cout)]) if add_downsample else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor,
                num_frames: int) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        skips: List[torch.Tensor] = []
        for resnet, temp_conv in zip(self.resnets, self.temp_convs):
            x = resnet(x, temb)
            if num_frames > 1:
                x = temp_conv(x, num_frames)
            skips.append(x)
        if self.downsamplers is not None:
            for down in self.downsamplers:
                x = down(x)
            skips.append(x)
        return x, skips


class UNetMidBlock3DCrossAttn(nn.Module):
    """resnets[0] -> temp_convs[0] -> (attentions[0] -> temp_attentions[0] -> resnets[1] -> temp_convs[1])."""

    def __init__(self, spec: BlockSpec, c: int):
        super().__init__()
        self.resnets = nn.ModuleList([spec.resnet(c, c), spec.resnet(c, c)])
        self.temp_convs = nn.ModuleList([spec.temp_conv(c), spec.temp_conv(c)])
        self.attentions = nn.ModuleList([spec.attention(c)])
        self.temp_attentions = nn.ModuleList([spec.temp_attention(c)])

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        x = self.resnets[0](x, temb)
        if num_frames > 1:
            x = self.temp_convs[0](x, num_frames)
        x = self.attentions[0](x, context)
        if num_frames > 1:
            x = self.temp_attentions[0](x, num_frames)
        x = self.resnets[1](x, temb)
        if num_frames > 1:
            x = self.temp_convs[1](x, num_frames)
        return x


class CrossAttnUpBlock3D(nn.Module):
    """``forward(x, skips, temb, context, num_frames, upsample_size) -> x``; consumes ``skips`` last-first."""

    def __init__(self, spec: BlockSpec, cin: int, cout: int, prev_cout: int, num_layers: int, add_upsample: bool):
        super().__init__()
        res = []
        for i in range(num_layers):
            skip_c = cin if i == num_layers - 1 else cout
            res.append(spec.resnet((prev_cout if i == 0 else cout) + skip_c, cout))
        self.resnets = nn.ModuleList(res)
        self.temp_convs = nn.ModuleList([spec.temp_conv(cout) for _ in range(num_layers)])
        self.attentions = nn.ModuleList([spec.attention(cout) for _ in range(num_layers)])
        self.temp_attentions = nn.ModuleList([spec.temp_attention(cout) for _ in range(num_layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if add_upsample else None

    def forward(self, x: torch.Tensor, skips: List[torch.Tensor], temb: torch.Tensor, context: torch.Tensor,
                num_frames: int, upsample_size: List[int]) -> torch.Tensor:
        i = len(skips)
        for resnet, temp_conv, attn, temp_attn in zip(self.resnets, self.temp_convs, self.attentions,
                                                      self.temp_attentions):
            i -= 1
            x = resnet(torch.cat([x, skips[i]], dim=1), temb)
            if num_frames > 1:
                x = temp_conv(x, num_frames)
            x = attn(x, context)
            if num_frames > 1:
                x = temp_attn(x, num_frames)
        if self.upsamplers is not None:
            for up in self.upsamplers:
                x = up(x, upsample_size)
        return x


class UpBlock3D(nn.Module):
    """ResNet + TemporalConv up block; ``context`` accepted and ignored (uniform signature)."""

    def __init__(self, spec: BlockSpec, cin: int, cout: int, prev_cout: int, num_layers: int, add_upsample: bool):
        super().__init__()
        res = []
        for i in range(num_layers):
            skip_c = cin if i == num_layers - 1 else cout
            res.append(spec.resnet((prev_cout if i == 0 else cout) + skip_c, cout))
        self.resnets = nn.ModuleList(res)
        self.temp_convs = nn.ModuleList([spec.temp_conv(cout) for _ in range(num_layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if add_upsample else None

    def forward(self, x: torch.Tensor, skips: List[torch.Tensor], temb: torch.Tensor, context: torch.Tensor,
                num_frames: int, upsample_size: List[int]) -> torch.Tensor:
        i = len(skips)
        for resnet, temp_conv in zip(self.resnets, self.temp_convs):
            i -= 1
            x = resnet(torch.cat([x, skips[i]], dim=1), temb)
            if num_frames > 1:
                x = temp_conv(x, num_frames)
        if self.upsamplers is not None:
            for up in self.upsamplers:
                x = up(x, upsample_size)
        return x
