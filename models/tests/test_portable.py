"""models/train/portable.py: trained weights packed as NumPy + JSON (what the GPU training script brings back).

* a nested state dict with every supported dtype (bfloat16 included, as its bits), non-contiguous and 0-d
  tensors, and the plain values around them comes back bit for bit through pack -> unpack -> torch.load;
* the .npz is readable without torch and without pickle (``np.load(allow_pickle=False)``);
* what cannot be packed (a set, a non-string key, a complex tensor) and files that are not packed weights are
  refused with a message that names the file and the place inside it (exit 2 from the command line).
"""
import contextlib
import io
import os
import sys
import tempfile
import unittest

import numpy as np
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)
from models.train import portable  # noqa: E402
from models.tests.test_train_smoke import _assert_same  # noqa: E402


def sample_state():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 6, generator=g)
    return {
        "unet_stage1": {"conv.weight": w, "conv.bias": torch.randn(4, generator=g),
                        "transposed": w.t(),                                     # not contiguous
                        "half": torch.randn(3, 3, generator=g).half(),
                        "bf16": torch.randn(5, generator=g).to(torch.bfloat16),
                        "f64": torch.randn(2, generator=g).double()},
        "counts": torch.arange(7, dtype=torch.int64), "mask": torch.tensor([True, False, True]),
        "bytes": torch.tensor([0, 255], dtype=torch.uint8), "scalar": torch.tensor(3.5),
        "step": 1200, "lr": 2e-4, "name": "stage1", "none": None, "flags": [True, 1, "x"], "pair": (1, 2.5),
    }


class PortableTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def test_round_trip_is_bit_identical_for_every_dtype_and_structure(self):
        state = sample_state()
        torch.save(state, self.path("stage1.pt"))
        n = portable.pack(self.path("stage1.pt"), self.path("stage1.npz"))
        self.assertEqual(n, 10)
        os.makedirs(self.path("back"))
        portable.unpack(self.path("stage1.npz"), self.path("back/stage1.pt"))
        back = torch.load(self.path("back/stage1.pt"))
        _assert_same(self, state, back, "state")
        self.assertTrue(back["unet_stage1"]["transposed"].is_contiguous())
        self.assertTrue(torch.equal(back["unet_stage1"]["transposed"], state["unet_stage1"]["conv.weight"].t()))

    def test_the_file_is_plain_numpy_without_pickle(self):
        torch.save(sample_state(), self.path("s.pt"))
        portable.pack(self.path("s.pt"), self.path("s.npz"))
        with np.load(self.path("s.npz"), allow_pickle=False) as z:
            self.assertIn(portable.SKELETON, z.files)
            arrays = [z[k] for k in z.files if k != portable.SKELETON]
        self.assertIn(np.dtype("uint16"), {a.dtype for a in arrays})          # bfloat16's bits
        self.assertEqual(sorted(a.dtype.name for a in arrays),
                         sorted(["float32", "float32", "float32", "float16", "uint16", "float64", "int64", "bool",
                                 "uint8", "float32"]))

    def test_command_line_packs_and_unpacks_several_files(self):
        for name in ("vae", "stage2_turn"):
            torch.save({"w": torch.full((2,), float(len(name)))}, self.path(f"{name}.pt"))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            self.assertEqual(portable.main(["pack", self.path("vae.pt"), self.path("stage2_turn.pt"),
                                            "--out-dir", self.path("packed")]), 0)
            self.assertEqual(portable.main(["unpack", self.path("packed/vae.npz"), self.path("packed/stage2_turn.npz"),
                                            "--out-dir", self.path("unpacked")]), 0)
        self.assertEqual(sorted(os.listdir(self.path("packed"))), ["stage2_turn.npz", "vae.npz"])
        self.assertEqual(torch.load(self.path("unpacked/stage2_turn.pt"))["w"].tolist(), [11.0, 11.0])
        self.assertIn("(1 tensors)", out.getvalue())

    def test_what_cannot_be_packed_is_named(self):
        cases = [({"a": {"b": {1, 2}}}, "s.pt['a']['b']: a set cannot be packed"),
                 ({"a": {3: torch.zeros(1)}}, "s.pt['a']: only string keys can be packed, found [3]"),
                 ({"z": torch.zeros(2, dtype=torch.complex64)}, "s.pt['z']: a tensor of dtype torch.complex64")]
        for obj, message in cases:
            torch.save(obj, self.path("s.pt"))
            with self.assertRaises(portable.PortableError) as cm:
                portable.pack(self.path("s.pt"), self.path("s.npz"))
            self.assertIn(message, str(cm.exception))
            self.assertFalse(os.path.exists(self.path("s.npz")))

    def test_files_that_are_not_packed_weights_exit_2_naming_them(self):
        np.savez(self.path("plain.npz"), x=np.zeros(2))
        with open(self.path("junk.npz"), "wb") as f:
            f.write(b"not a zip")
        cases = [(self.path("plain.npz"), "no __skeleton__ entry"),
                 (self.path("junk.npz"), "cannot be read as a packed weights file"),
                 (self.path("missing.npz"), "missing.npz")]
        for f, message in cases:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(portable.main(["unpack", f, "--out-dir", self.path("o")]), 2, f)
            self.assertIn(message, err.getvalue(), f)
            self.assertIn(os.path.basename(f), err.getvalue(), f)


if __name__ == "__main__":
    unittest.main()
