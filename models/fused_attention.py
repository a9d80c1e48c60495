"""Switch a built network to PyTorch's fused attention (``F.scaled_dot_product_attention``) before export.

Every attention layer of our networks computes softmax(q kᵀ/√d) v either with plain matmuls (the ops libtorch 1.13
has, what the CPU CI loads) or with ``scaled_dot_product_attention`` (torch >= 2.0: flash / memory-efficient
kernels on CUDA that never materialise the score matrix — the VAE's 90x160 attention alone would hold 207M scores
per frame). The choice is made when the module is scripted, so it is a property of the exported file:

* UNet-family layers (``unet3d_attention.Attention``: stage 1/2 UNets, CAM) hold an attention *core*:
  ``MathAttentionCore`` is replaced by ``SdpaAttentionCore`` (no parameters, same scale 1/√d);
* the other layers (CLIP / OpenCLIP text attention, the enhancer UNet, the VAE mid attention) have a
  ``use_sdpa: Final[bool]`` attribute, read as a constant when scripting: it is set to True.

    n = enable_fused_attention(module)   # before torch.jit.script(module); returns the number of layers switched

The weights are untouched, so a state dict loads the same either way; the outputs agree to float rounding
(tests/test_fused_attention.py, torch >= 2 only).
"""
import torch
import torch.nn.functional as F
from torch import nn

from .unet3d_attention import MathAttentionCore, SdpaAttentionCore


def fused_attention_available() -> bool:
    """True when this torch has ``F.scaled_dot_product_attention`` (2.0 and later)."""
    return hasattr(F, "scaled_dot_product_attention")


def enable_fused_attention(module: nn.Module) -> int:
    """Switches every attention layer of ``module`` (in place) to ``scaled_dot_product_attention``; returns how
    many layers were switched. Raises RuntimeError on a torch without it (the exported file would need it)."""
    if not fused_attention_available():
        raise RuntimeError(f"fused attention needs torch >= 2.0 (F.scaled_dot_product_attention); this is torch "
                           f"{torch.__version__}: export with --attention math")
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, MathAttentionCore):
                setattr(parent, name, SdpaAttentionCore(_head_dim(child)))
                count += 1
        if isinstance(getattr(parent, "use_sdpa", None), bool) and not parent.use_sdpa:
            parent.use_sdpa = True
            count += 1
    return count


def _head_dim(core: MathAttentionCore) -> int:
    """MathAttentionCore keeps only its scale 1/√d; recover d."""
    return int(round(core.scale ** -2))
