"""bench/quality/metrics.py, the detectors behind the issue-6 benchmark table, on inputs whose answer is known.

* ``adaptive_cuts`` against PySceneDetect's AdaptiveDetector defaults (adaptive_threshold 3.0, min_content_val 15,
  window_width 2, min_scene_len 15 frames), on hand-made content-value sequences;
* ``analyse`` on true world renders (the benchmark's ``world`` row): no cut, seam ratios 1, the caption's colour,
  shape and direction;
* a real cut (two scenes spliced) and a window-seam flicker (a known tint added to every other 8-frame window
  from frame 16, as a stage-2 window that restarts the global tone would) are found where they were put;
* an object recoloured from a given frame on is one ``colour_turns``.
* ``seam_ease.ease`` (session 20's offline probe) takes a known tone step at a seam out of the first L new frames,
  linearly, leaves the other frames alone and skips steps below ``min_step``.

Numpy only (no torch); 240 frames of 64x64 per video, as the benchmark scores them.
"""
import os
import sys
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "quality"))
import metrics  # noqa: E402
import seam_ease  # noqa: E402
from models import world  # noqa: E402

PROMPTS = ["a red circle moving to the left on a plain black background",
           "a blue square moving slowly up on a cyan gradient background",
           "a white triangle moving to the left on a plain green background",
           "a green circle moving down on a plain pink background"]


def true_video(prompt: str, i: int = 0, frames: int = 240) -> np.ndarray:
    """uint8 [T, 64, 64, 3] true render of ``prompt`` (the benchmark's reference scene for prompt ``i``)."""
    return metrics.reference_video(i, prompt, frames)


class AdaptiveCutsTest(unittest.TestCase):
    def test_a_spike_three_times_its_neighbours_and_at_least_15_is_a_cut_at_the_frame_after_it(self):
        v = np.full(60, 4.0)
        v[20] = 40.0                  # frames 20 -> 21 differ: the new scene starts at frame 21
        self.assertEqual(metrics.adaptive_cuts(v), [21])

    def test_below_min_content_or_below_three_times_the_neighbours_is_no_cut(self):
        v = np.full(60, 4.0)
        v[20] = 14.0                  # 3.5x the neighbours but under min_content_val 15
        self.assertEqual(metrics.adaptive_cuts(v), [])
        v = np.full(60, 10.0)
        v[20] = 29.0                  # over 15 but 2.9x the neighbours
        self.assertEqual(metrics.adaptive_cuts(v), [])

    def test_cuts_closer_than_min_scene_len_are_merged_into_the_first(self):
        v = np.full(80, 2.0)
        v[[20, 30, 40]] = 50.0        # cuts at frames 21, 31 (10 after: dropped), 41 (20 after 21: kept)
        self.assertEqual(metrics.adaptive_cuts(v), [21, 41])


class AnalyseTest(unittest.TestCase):
    def test_true_renders_have_no_cut_continuous_seams_and_the_captions_attributes(self):
        for i, p in enumerate(PROMPTS):
            r = metrics.analyse(true_video(p, i), p)
            with self.subTest(prompt=p):
                self.assertEqual(r["cut_frames"], [])
                self.assertAlmostEqual(r["seam_ratio"], 1.0, delta=0.25)
                self.assertEqual(r["seam_tone"], 1.0)       # both medians under the 0.5 grey-level floor
                self.assertEqual(r["still_windows"], 0)
                self.assertEqual(r["colour_turns"], 0)
                a = world.parse_caption(p)
                self.assertEqual(r["detected"], [a["colour"], a["shape"], a["direction"]])

    def test_two_spliced_scenes_give_one_cut_at_the_splice(self):
        a, b = true_video(PROMPTS[0], 0), true_video(PROMPTS[3], 3)
        r = metrics.analyse(np.concatenate([a[:100], b[100:]]), PROMPTS[0])
        self.assertEqual(r["cut_frames"], [100])
        self.assertEqual(r["seam_cuts"], 0)              # 100 is no window start (16 + 8k)
        # spliced at a window start: a seam cut, and cut_tone is the frame-mean jump computed here by hand
        r = metrics.analyse(np.concatenate([a[:104], b[104:]]), PROMPTS[0])
        self.assertEqual((r["cut_frames"], r["seam_cuts"]), ([104], 1))
        frame_mean = lambda f: f.reshape(-1, 3).astype(np.float64).mean(0)     # noqa: E731
        jump = np.abs(frame_mean(b[104]) - frame_mean(a[103])).sum()
        self.assertAlmostEqual(r["cut_tone"], jump, places=3)
        self.assertTrue(np.isnan(metrics.analyse(a, PROMPTS[0])["cut_tone"]))     # no cut, no cut tone

    def test_a_tint_that_restarts_at_every_window_seam_raises_seam_tone_not_the_cut_count(self):
        p = PROMPTS[3]                # green on pink: no channel under 6, so the tint is not clipped
        clean = true_video(p, 3)
        v = clean.astype(np.int16)
        tint = np.zeros(len(v), np.int16)
        for k, start in enumerate(range(16, len(v), 8)):
            tint[start:start + 8] = -6 * (k % 2)      # -6 grey levels on R, G, B in every other window
        flick = (v + tint[:, None, None, None]).clip(0, 255).astype(np.uint8)
        self.assertGreaterEqual(int(v.min()), 6)     # the tint is never clipped
        r0, r1 = metrics.analyse(clean, p), metrics.analyse(flick, p)
        # independent count: the frame-mean jump at the tinted seams is 3 x 6 = 18 levels plus the scene's own
        # change, which stays under the 0.5-level floor inside windows: the ratio is 18 / 0.5 = 36
        self.assertAlmostEqual(r1["seam_tone"], 18 / 0.5, delta=1.0)     # measured 36.00
        self.assertEqual(r0["seam_tone"], 1.0)
        self.assertGreater(r1["seam_ratio"], 2.0 * r0["seam_ratio"])
        self.assertEqual(r1["cut_frames"], [])        # a 6-level tint is no scene cut

        self.assertEqual(r1["handover_tone"], 1.0)    # window 16-23 is not tinted: no jump at the hand-over

    def test_a_tint_from_frame_16_on_is_a_handover_jump_and_no_seam_flicker(self):
        p = PROMPTS[3]
        v = true_video(p, 3).astype(np.int16)
        v[16:] -= 6                                     # stage 2 darker than stage 1 by 6 levels on R, G, B
        r = metrics.analyse(v.clip(0, 255).astype(np.uint8), p)
        self.assertAlmostEqual(r["handover_tone"], 18 / 0.5, delta=1.0)
        self.assertEqual(r["seam_tone"], 1.0)

    def test_an_object_that_turns_another_colour_is_one_colour_turn(self):
        p = PROMPTS[0]                                  # red circle on black
        v = true_video(p, 0)
        red, yellow = np.array(world.RGB["red"]), np.array(world.RGB["yellow"])
        x = v.astype(np.float32) / 255.0
        is_red = ((x - red) ** 2).sum(-1) < 0.05        # the object's own pixels (edges blend into black: kept)
        self.assertTrue(is_red[:8].any() and is_red[-8:].any())
        turned = v.copy()
        turned[96:][is_red[96:]] = np.round(yellow * 255).astype(np.uint8)   # the object yellow from frame 96
        r0, r1 = metrics.analyse(v, p), metrics.analyse(turned, p)
        self.assertEqual(r0["colour_turns"], 0)
        self.assertEqual(r1["colour_turns"], 1)         # stretch 80-95 red, 96-111 yellow: one change
        # an object that turns yellow at frame 88 (mid-stretch): stretch 80-95 is 8 red and 8 yellow frames
        mid = v.copy()
        mid[88:][is_red[88:]] = np.round(yellow * 255).astype(np.uint8)
        self.assertEqual(metrics.analyse(mid, p)["colour_turns"], 1)



class SeamEaseTest(unittest.TestCase):
    def test_a_tone_step_at_a_seam_is_spread_over_l_frames_and_nothing_else_moves(self):
        v = true_video(PROMPTS[2], 2, 48).astype(np.int16)
        v[24:, :, :, 0] = np.clip(v[24:, :, :, 0] - 40, 0, 255)      # red channel down by 40 from seam 24 on
        v = v.astype(np.uint8)
        m = v.astype(np.float64).mean(axis=(1, 2))
        step = m[24] - m[23]
        out = seam_ease.ease(v, 4)
        got = out.astype(np.float64).mean(axis=(1, 2))
        untouched = [i for i in range(48) if not 24 <= i < 28 and not 16 <= i < 20]
        self.assertTrue(np.array_equal(out[untouched], v[untouched]))
        for k in range(4):          # shown = frame - step (4 - k) / 4, every pixel alike (no clipping here: +40 max)
            want = np.clip(np.round(v[24 + k].astype(np.float64) - step * (4 - k) / 4), 0, 255)
            self.assertTrue(np.array_equal(out[24 + k], want.astype(np.uint8)), k)
        self.assertLess(np.abs(got[24] - got[23]).sum(), 1.0)          # the seam no longer steps
        self.assertGreater(np.abs(step).sum(), 5.0)                     # a real step was there to ease
        # other seams (16, 32, 40) step by the object's own motion alone, well under half a grey level a pixel, so
        # their eased frames round back to themselves; below min_step the seam is left as it is
        self.assertTrue(np.array_equal(seam_ease.ease(v, 4, min_step=float(np.abs(step).sum()) + 1)[24:28],
                                       v[24:28]))


if __name__ == "__main__":
    unittest.main()
