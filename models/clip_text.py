"""CLIP text towers of the pipeline (spec §1.6, §1.8, §5).

Both encoders are the OpenCLIP ViT-H/14 text transformer (width 1024, 16 heads, MLP 4096, exact GELU,
pre-LayerNorm blocks, causal mask, 77 tokens, vocabulary 49408) under two naming schemes:

* ``CLIPTextEncoder``: HF ``CLIPTextModel`` layout, as stored in the ModelScope repo's ``text_encoder``
  (23 layers, i.e. the OpenCLIP tower without its last block). Output: ``last_hidden_state``, the last
  layer's output after ``final_layer_norm`` (what the diffusers T2V pipeline feeds the UNet; stages 1-2).
  Names: ``text_model.embeddings.{token_embedding,position_embedding}``,
  ``text_model.encoder.layers.N.{self_attn.{q,k,v,out}_proj,layer_norm1,mlp.fc1,mlp.fc2,layer_norm2}``,
  ``text_model.final_layer_norm``.
* ``OpenCLIPTextEncoder``: OpenCLIP layout, as in ``open_clip_pytorch_model.bin`` of the enhancer
  (``FrozenOpenCLIPEmbedder(layer='penultimate')``): the output of the penultimate block followed by
  ``ln_final`` (stage 3). Names: ``token_embedding``, ``positional_embedding``,
  ``transformer.resblocks.N.{ln_1,attn.in_proj_weight,attn.in_proj_bias,attn.out_proj,ln_2,mlp.c_fc,mlp.c_proj}``,
  ``ln_final``; ``attn_mask`` is a non-persistent buffer. The unused last block, ``text_projection``
  and ``logit_scale`` are not built (state_dict_keys_aux drops them).

Both: ``forward(input_ids int64 [B, 77]) -> float [B, 77, D]``. Padding ids do not change the
outputs at earlier positions (causal mask), but the UNets attend to all 77 outputs, so the pad id
matters (see models/tokenizer.py).
"""

import math
from typing import Final

import torch
import torch.nn as nn
import torch.nn.functional as F

from .configs_aux import CLIPTextConfig, OpenCLIPTextConfig


def causal_mask(length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Additive [L, L] mask: 0 on and below the diagonal, -inf above."""
    return torch.full((length, length), float("-inf"), device=device, dtype=dtype).triu(1)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, L, h*d] -> [B, h, L, d]."""
    b, length, width = x.shape
    return x.reshape(b, length, heads, width // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, h, L, d] -> [B, L, h*d]."""
    b, heads, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, heads * d)


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v on [B, h, L, d]; softmax in float32."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1])) + mask
    return torch.matmul(scores.float().softmax(dim=-1).to(v.dtype), v)


# --------------------------------------------------------------------------------------------- HF layout

class CLIPAttention(nn.Module):
    heads: Final[int]
    use_sdpa: Final[bool]

    def __init__(self, width: int, heads: int, use_sdpa: bool):
        super().__init__()
        self.heads = heads
        self.use_sdpa = use_sdpa
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.q_proj(x), self.heads)
        k = split_heads(self.k_proj(x), self.heads)
        v = split_heads(self.v_proj(x), self.heads)
        if self.use_sdpa:  # compile-time constant; not compiled when False (libtorch 1.13 has no SDPA)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            out = masked_attention(q, k, v, mask)
        return self.out_proj(merge_heads(out))


class CLIPMLP(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, cfg: CLIPTextConfig, use_sdpa: bool):
        super().__init__()
        self.self_attn = CLIPAttention(cfg.hidden_size, cfg.num_attention_heads, use_sdpa)
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = CLIPMLP(cfg.hidden_size, cfg.intermediate_size)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEmbeddings(nn.Module):
    def __init__(self, cfg: CLIPTextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        return self.token_embedding(input_ids) + self.position_embedding.weight[:length].unsqueeze(0)


class CLIPEncoder(nn.Module):
    def __init__(self, cfg: CLIPTextConfig, use_sdpa: bool):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(cfg, use_sdpa) for _ in range(cfg.num_hidden_layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x


class CLIPTextTransformer(nn.Module):
    def __init__(self, cfg: CLIPTextConfig, use_sdpa: bool):
        super().__init__()
        self.embeddings = CLIPEmbeddings(cfg)
        self.encoder = CLIPEncoder(cfg, use_sdpa)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        x = self.encoder(x, causal_mask(input_ids.shape[1], x.device, x.dtype))
        return self.final_layer_norm(x)


class CLIPTextEncoder(nn.Module):
    """ModelScope text encoder. forward(input_ids int64 [B, 77]) -> last_hidden_state [B, 77, 1024]."""

    def __init__(self, config: CLIPTextConfig = CLIPTextConfig(), use_sdpa: bool = False):
        super().__init__()
        _check_sdpa(use_sdpa)
        self.text_model = CLIPTextTransformer(config, use_sdpa)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_model(input_ids)


# ------------------------------------------------------------------------------------- OpenCLIP layout

class OpenCLIPAttention(nn.Module):
    """nn.MultiheadAttention parameter layout: packed in_proj (q, k, v rows), out_proj."""

    heads: Final[int]
    use_sdpa: Final[bool]

    def __init__(self, width: int, heads: int, use_sdpa: bool):
        super().__init__()
        self.heads = heads
        self.use_sdpa = use_sdpa
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = split_heads(q, self.heads), split_heads(k, self.heads), split_heads(v, self.heads)
        if self.use_sdpa:  # compile-time constant
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            out = masked_attention(q, k, v, mask)
        return self.out_proj(merge_heads(out))


class OpenCLIPMLP(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, cfg: OpenCLIPTextConfig, use_sdpa: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.attn = OpenCLIPAttention(cfg.width, cfg.heads, use_sdpa)
        self.ln_2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = OpenCLIPMLP(cfg.width, cfg.width * cfg.mlp_ratio)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class OpenCLIPTransformer(nn.Module):
    def __init__(self, cfg: OpenCLIPTextConfig, depth: int, use_sdpa: bool):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(cfg, use_sdpa) for _ in range(depth)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class OpenCLIPTextEncoder(nn.Module):
    """Enhancer text encoder. forward(input_ids int64 [B, 77]) -> [B, 77, 1024] (penultimate block + ln_final)."""

    def __init__(self, config: OpenCLIPTextConfig = OpenCLIPTextConfig(), use_sdpa: bool = False):
        super().__init__()
        _check_sdpa(use_sdpa)
        depth = config.layers - 1 if config.penultimate else config.layers
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.width))
        nn.init.normal_(self.positional_embedding, std=0.01)
        self.transformer = OpenCLIPTransformer(config, depth, use_sdpa)
        self.ln_final = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.register_buffer("attn_mask", causal_mask(config.context_length, torch.device("cpu"), torch.float32),
                             persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        x = self.token_embedding(input_ids) + self.positional_embedding[:length].unsqueeze(0)
        mask = self.attn_mask[:length, :length].to(x.dtype)
        return self.ln_final(self.transformer(x, mask))


def _check_sdpa(use_sdpa: bool) -> None:
    if use_sdpa and not hasattr(F, "scaled_dot_product_attention"):
        raise RuntimeError("use_sdpa=True needs torch >= 2.0 (F.scaled_dot_product_attention)")

