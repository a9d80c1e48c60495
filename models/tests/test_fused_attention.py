"""models.fused_attention: switching built networks to F.scaled_dot_product_attention before export.

On torch >= 2.0 (the GPU machine) every tiny network gives the same outputs with fused and math attention, also
after scripting; on torch 1.13 (Debian, CI) the switch and an sdpa export refuse with the fix in the message.
Tolerance 1e-5 absolute on float32 outputs of order 1: the fused kernels sum in another order.
"""
import tempfile
import unittest

import torch

from models.configs_aux import build_aux_model
from models.configs_unet import get_config
from models.export import ExportError, export_directory
from models.export_components import component_specs, example_inputs
from models.fused_attention import enable_fused_attention, fused_attention_available
from models.stage2 import Stage2UNet
from models.unet3d_attention import MathAttentionCore, SdpaAttentionCore

TOL = 1e-5


def _roundtrip(module):
    return torch.jit.script(module)


class FusedAttentionUnavailableTest(unittest.TestCase):
    @unittest.skipIf(fused_attention_available(), "this torch has scaled_dot_product_attention")
    def test_switch_and_export_refuse_on_old_torch(self):
        with self.assertRaisesRegex(RuntimeError, r"needs torch >= 2\.0.*export with --attention math"):
            enable_fused_attention(build_aux_model("vae", "tiny").video_decoder())
        with tempfile.TemporaryDirectory() as out, self.assertRaisesRegex(RuntimeError, "needs torch >= 2.0"):
            export_directory(out, "tiny", attention="sdpa", log=lambda *_: None)

    def test_unknown_attention_is_an_export_error(self):
        with tempfile.TemporaryDirectory() as out, self.assertRaisesRegex(ExportError, "attention must be math, sdpa"):
            export_directory(out, "tiny", attention="flash", log=lambda *_: None)


@unittest.skipUnless(fused_attention_available(), "needs torch >= 2.0 (scaled_dot_product_attention)")
class FusedAttentionTest(unittest.TestCase):
    def _same(self, build, inputs):
        torch.manual_seed(0)
        math_model = build().eval()
        fused = build().eval()
        fused.load_state_dict(math_model.state_dict())
        switched = enable_fused_attention(fused)
        self.assertGreater(switched, 0)
        with torch.no_grad():
            a = math_model(*inputs)
            b = fused(*inputs)
            c = _roundtrip(fused)(*inputs)
        a, b, c = (x[0] if isinstance(x, tuple) else x for x in (a, b, c))
        self.assertLess(float((a - b).abs().max()), TOL)
        self.assertLess(float((a - c).abs().max()), TOL)
        return fused

    def test_stage2_unet(self):
        net = get_config("tiny")
        fused = self._same(lambda: Stage2UNet(net), (torch.randn(1, 4, 16, 8, 8), torch.tensor([500.0]),
                                                      torch.randn(1, 93, net.unet.cross_attention_dim),
                                                      torch.rand(1, 3, 8, 64, 64) * 2 - 1))
        self.assertFalse(any(isinstance(m, MathAttentionCore) for m in fused.modules()))
        self.assertTrue(any(isinstance(m, SdpaAttentionCore) for m in fused.modules()))

    def test_vae_decoder_mid_attention(self):
        self._same(lambda: build_aux_model("vae", "tiny").video_decoder(), (torch.randn(1, 4, 2, 8, 8),))

    def test_enhancer_unet_and_text_encoders(self):
        ids = torch.randint(0, 100, (2, 77))
        self._same(lambda: build_aux_model("clip_text", "tiny"), (ids,))
        self._same(lambda: build_aux_model("openclip_text", "tiny"), (ids,))
        spec = {s.role: s for s in component_specs("tiny")}["enhancer_unet"]
        self._same(lambda: build_aux_model("vid2vid_unet", "tiny"),
                   tuple(example_inputs(spec, spec.example_dims, torch.float32, "cpu")))


if __name__ == "__main__":
    unittest.main()
