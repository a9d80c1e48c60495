/**
 * Cut guard: an addition of this library, not in the paper nor the official code (option
 * `stage2.cutRetries`, off unless the model's manifest turns it on).
 *
 * A stage-2 window continues the frames it is conditioned on, but now and then its new frames start in a tone or
 * a layout of their own, and the video shows a scene cut at the window's seam (the embedded default model: 2 and 3
 * of 24 benchmark videos on seeds 33 and 34, 3 of the 5 cuts at the stage-1 → stage-2 handover;
 * models/train/README.md "Session 21"). The guard scores the seam after each window is decoded and, when it looks
 * like a cut, samples the window again with the next noise of the run's generator, up to `cutRetries` times. At the
 * handover (window 1) a retry runs stage 1 again first, with a seed derived from the run's (`stage1Seed`): stage 2
 * re-draws stage 1's look in its own the same way for any noise, so window 1 alone never mends it (measured: every
 * retried handover was a cut again); with the guard on, stage 1's frames are therefore streamed once window 1 is
 * accepted.
 *
 * The score is a scene-cut detector's, PySceneDetect's AdaptiveDetector on the seam alone:
 *
 *   c(a, b) = mean over pixels and the three channels of |H_a − H_b|, |S_a − S_b|, |V_a − V_b|
 *             (HSV in OpenCV's 8-bit ranges: H in [0, 180), S and V in [0, 255])
 *   ratio   = c(last shown, first new) / mean of c over the (up to) 2 frame pairs before and 2 after the seam
 *
 * and the seam is a cut when ratio ≥ {@link CUT_RATIO} and c ≥ {@link CUT_MIN_CONTENT}. Both are below the
 * detector's defaults (3.0 and 15), so a seam just short of a detected cut is retried too. When every attempt is
 * a cut, the window with the lowest ratio is kept: the guard never drops a window and never stops the run.
 *
 * What it costs: nothing when no seam trips it (the frames are already on the CPU for the output), one more
 * window per retry when one does (and a stage 1 at the handover); at worst (1 + cutRetries) times stage 2. On the
 * default model: 19 and 11 retried windows of 672 on the benchmark's seeds; without APM 43 and 28. Retries draw
 * from the same generator, so a run stays a function of its seed (and of `cutRetries`) and resumes exactly from a
 * state directory.
 * @module
 */

/** The seam's content value must be at least this many times the mean of its neighbours' (detector default: 3.0). */
export const CUT_RATIO = 2.5;
/** …and at least this large (detector default `min_content_val`: 15). */
export const CUT_MIN_CONTENT = 12;
/** Frame pairs on each side of the seam the ratio compares against (detector default `window_width`: 2). */
const NEIGHBOURS = 2;

/** How a seam scores: its content value, the ratio to its neighbours and whether that makes a cut. */
export interface SeamScore {
  /** c(last shown frame, first new frame). */
  content: number;
  /** `content` over the mean content value of the neighbouring frame pairs. */
  ratio: number;
  /** ratio ≥ {@link CUT_RATIO} and content ≥ {@link CUT_MIN_CONTENT}. */
  cut: boolean;
}

/** RGB bytes of one frame → H, S, V per pixel in OpenCV's 8-bit ranges (as floats, not rounded). */
export function rgbToHsv(rgb: Uint8Array): Float32Array {
  if (rgb.length % 3 !== 0) throw new RangeError(`rgbToHsv: expected RGB bytes (a multiple of 3), got ${rgb.length}`);
  const out = new Float32Array(rgb.length);
  for (let i = 0; i < rgb.length; i += 3) {
    const r = rgb[i]! / 255;
    const g = rgb[i + 1]! / 255;
    const b = rgb[i + 2]! / 255;
    const v = Math.max(r, g, b);
    const d = v - Math.min(r, g, b);
    let h = 0;
    if (d > 0) {
      if (v === r) h = (60 * (g - b)) / d;
      else if (v === g) h = 120 + (60 * (b - r)) / d;
      else h = 240 + (60 * (r - g)) / d;
      h = ((h % 360) + 360) % 360;
    }
    out[i] = h / 2;
    out[i + 1] = v > 0 ? (d / v) * 255 : 0;
    out[i + 2] = v * 255;
  }
  return out;
}

/** c(a, b): mean of |ΔH|, |ΔS|, |ΔV| over the pixels of two HSV frames of the same size. */
export function contentValue(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length || a.length === 0) throw new RangeError(`contentValue: frames of ${a.length} and ${b.length} values`);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

/**
 * Scores the seam between `before` (frames already shown, oldest first; the last one is the seam's left side) and
 * `after` (the new frames, the first one is the seam's right side), each an RGB frame of the same size.
 * Uses up to 3 frames on each side; needs at least one on each.
 */
export function scoreSeam(before: readonly Uint8Array[], after: readonly Uint8Array[]): SeamScore {
  if (before.length === 0 || after.length === 0) throw new RangeError(`scoreSeam: needs a frame on each side, got ${before.length} and ${after.length}`);
  const frames = [...before.slice(-(NEIGHBOURS + 1)), ...after.slice(0, NEIGHBOURS + 1)].map(rgbToHsv);
  const seam = Math.min(before.length, NEIGHBOURS + 1) - 1; // values[i] compares frames i and i + 1
  const values = frames.slice(1).map((f, i) => contentValue(frames[i]!, f));
  const content = values[seam]!;
  const others = values.filter((_, i) => i !== seam);
  const mean = others.length === 0 ? 0 : others.reduce((s, x) => s + x, 0) / others.length;
  // As the detector: with still neighbours any change at least min_content counts as a cut (ratio 255).
  const ratio = mean > 1e-6 ? content / mean : content >= CUT_MIN_CONTENT ? 255 : 0;
  return { content, ratio, cut: ratio >= CUT_RATIO && content >= CUT_MIN_CONTENT };
}

/** Splits `count` RGB frames of `frameBytes` bytes each into views. */
export function frameViews(rgb: Uint8Array, frameBytes: number, from = 0, count = Math.floor(rgb.length / frameBytes) - from): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => rgb.subarray((from + i) * frameBytes, (from + i + 1) * frameBytes));
}
