"""The manifest's ``prompt_words`` (a closed vocabulary; the library warns about prompt words outside it).

* ``world.CORE_WORDS`` is exactly the set of words of core-world captions (what the default model was trained on);
* ``models/default``'s manifest lists exactly those words;
* ``models.export --prompt-words core|full`` writes the list (sorted), no flag writes none (open vocabulary);
* ``manifest.prompt_words`` refuses what the library could never match (not lowercase letters, empty).
"""
import json
import os
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)
from models import manifest as mf  # noqa: E402
from models import world  # noqa: E402
from models.export import main as export_main  # noqa: E402

DEFAULT = os.path.join(ROOT, "models", "default", mf.MANIFEST_NAME)


class PromptWordsTest(unittest.TestCase):
    def test_core_words_are_the_words_of_core_captions(self):
        rng = np.random.default_rng(0)
        seen = set()
        for _ in range(4000):
            seen |= set(world.caption(world.sample_scene(rng, "core")).split())
        self.assertEqual(seen, set(world.CORE_WORDS))
        self.assertLess(set(world.CORE_WORDS), set(world.WORDS))

    @unittest.skipUnless(os.path.exists(DEFAULT), "models/default is not in this checkout")
    def test_the_default_model_lists_the_core_words(self):
        with open(DEFAULT, encoding="utf-8") as f:
            self.assertEqual(json.load(f)["prompt_words"], sorted(world.CORE_WORDS))

    def test_export_writes_the_list_only_when_asked(self):
        with tempfile.TemporaryDirectory() as d:
            for flag, expected in ((["--prompt-words", "full"], sorted(world.WORDS)), ([], None)):
                self.assertEqual(export_main(["--config", "tiny", "--out", d, "--no-verify", *flag]), 0)
                with open(os.path.join(d, mf.MANIFEST_NAME), encoding="utf-8") as f:
                    self.assertEqual(json.load(f).get("prompt_words"), expected, flag)

    def test_the_list_is_sorted_unique_lowercase_letters(self):
        self.assertEqual(mf.prompt_words(["red", "a", "red"]), ["a", "red"])
        for bad, message in ((["Red"], "'Red' is not a lowercase word"), (["red circle"], "'red circle'"),
                             (["x2"], "'x2'"), ([""], "''"), ([], "the list is empty")):
            with self.assertRaises(ValueError) as cm:
                mf.prompt_words(bad)
            self.assertIn(message, str(cm.exception))


if __name__ == "__main__":
    unittest.main()
