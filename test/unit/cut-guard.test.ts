// The cut guard's seam score (lib/pipeline/cut-guard.ts) against an independent computation: Python's standard
// library `colorsys.rgb_to_hsv` (its own HSV conversion) and PySceneDetect's AdaptiveDetector formula written
// out again in Python. Skipped visibly when /usr/bin/python3 is missing (CI installs it with python3-torch).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { CUT_MIN_CONTENT, CUT_RATIO, contentValue, frameViews, rgbToHsv, scoreSeam } from '../../lib/pipeline/cut-guard.js';

const PYTHON = '/usr/bin/python3';
const hasPython = existsSync(PYTHON);

/** A deterministic pseudo-random frame (xorshift), or a flat one. */
function frame(pixels: number, seed: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
function flat(pixels: number, rgb: [number, number, number]): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  for (let p = 0; p < pixels; p++) out.set(rgb, 3 * p);
  return out;
}
/** A 16×16 frame: a 4×4 red square at column `x` on a blue background. */
function square(x: number): Uint8Array {
  const out = flat(256, [38, 77, 230]);
  for (let r = 6; r < 10; r++) for (let c = x; c < x + 4; c++) out.set([220, 30, 30], 3 * (r * 16 + c));
  return out;
}

// Python: HSV per pixel with colorsys (H 0..1 -> x180, S, V 0..1 -> x255), content values, the seam's ratio.
const REFERENCE = `
import colorsys, json, sys
frames = json.load(sys.stdin)
def hsv(f):
    return [(h * 180.0, s * 255.0, v * 255.0) for h, s, v in
            (colorsys.rgb_to_hsv(f[i] / 255.0, f[i + 1] / 255.0, f[i + 2] / 255.0) for i in range(0, len(f), 3))]
out = []
for before, after in frames:
    fs = [hsv(f) for f in before[-3:] + after[:3]]
    vals = [sum(abs(a[k] - b[k]) for a, b in zip(fs[i], fs[i + 1]) for k in range(3)) / (3 * len(fs[i])) for i in range(len(fs) - 1)]
    seam = min(len(before), 3) - 1
    others = [v for i, v in enumerate(vals) if i != seam]
    mean = sum(others) / len(others) if others else 0.0
    ratio = vals[seam] / mean if mean > 1e-6 else (255.0 if vals[seam] >= ${CUT_MIN_CONTENT} else 0.0)
    out.append({"hsv": fs[0][:8], "content": vals[seam], "ratio": ratio})
print(json.dumps(out))
`;

function reference(cases: [Uint8Array[], Uint8Array[]][]): { hsv: number[][]; content: number; ratio: number }[] {
  const input = JSON.stringify(cases.map(([b, a]) => [b.map((f) => [...f]), a.map((f) => [...f])]));
  const r = spawnSync(PYTHON, ['-c', REFERENCE], { input, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as { hsv: number[][]; content: number; ratio: number }[];
}

describe('cut guard: the seam score', () => {
  if (!hasPython) {
    it.skip(`SKIPPED: ${PYTHON} is missing, so the cut guard is not checked against Python's colorsys`, () => {});
    return;
  }

  it('matches Python colorsys + the AdaptiveDetector formula on random, flat and grey frames (abs 1e-3)', () => {
    const grey = flat(64, [128, 128, 128]);
    const cases: [Uint8Array[], Uint8Array[]][] = [
      [[frame(64, 1), frame(64, 2), frame(64, 3)], [frame(64, 4), frame(64, 5), frame(64, 6)]],
      [[grey, flat(64, [255, 0, 0]), flat(64, [0, 255, 0])], [flat(64, [0, 0, 255]), frame(64, 7)]], // pure hues, 2 after
      [[frame(64, 8)], [frame(64, 9), frame(64, 10), frame(64, 11)]], // one frame before
      [[frame(64, 12), frame(64, 13), frame(64, 14), frame(64, 15), frame(64, 16)], [frame(64, 17), frame(64, 18), frame(64, 19), frame(64, 20)]], // more than 3 a side
    ];
    const ref = reference(cases);
    cases.forEach(([before, after], i) => {
      const s = scoreSeam(before, after);
      expect(s.content).toBeCloseTo(ref[i]!.content, 3);
      expect(s.ratio).toBeCloseTo(ref[i]!.ratio, 3);
      expect(s.cut).toBe(ref[i]!.ratio >= CUT_RATIO && ref[i]!.content >= CUT_MIN_CONTENT);
      const hsv = rgbToHsv(before.slice(-3)[0]!);
      ref[i]!.hsv.forEach((px, p) => px.forEach((v, k) => expect(Math.abs(hsv[3 * p + k]! - v)).toBeLessThan(1e-3)));
    });
  });

  it('calls a scene change a cut and a continuing motion not; still neighbours follow the detector (ratio 255 or 0)', () => {
    const moving = [square(2), square(3), square(4)];
    const cont = scoreSeam(moving, [square(5), square(6), square(7)]);
    expect(cont.cut).toBe(false);
    expect(cont.ratio).toBeCloseTo(1, 6); // every pair moves the square one column
    const scene = scoreSeam(moving, [flat(256, [40, 180, 60]), flat(256, [40, 180, 60]), flat(256, [40, 180, 60])]);
    expect(scene.cut).toBe(true);
    expect(scene.content).toBeGreaterThan(CUT_MIN_CONTENT);
    expect(scene.ratio).toBeGreaterThan(CUT_RATIO);
    const still = [square(4), square(4), square(4)];
    expect(scoreSeam(still, [flat(256, [40, 180, 60])])).toEqual({ content: expect.any(Number), ratio: 255, cut: true });
    const tiny = scoreSeam(still, [square(5)]); // a one-column step after still frames: below min content
    expect(tiny.content).toBeLessThan(CUT_MIN_CONTENT);
    expect(tiny).toMatchObject({ ratio: 0, cut: false });
  });

  it('splits RGB bytes into frame views and refuses frames it cannot score', () => {
    const rgb = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(frameViews(rgb, 6).map((f) => [...f])).toEqual([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]]);
    expect(frameViews(rgb, 3, 1, 2).map((f) => [...f])).toEqual([[4, 5, 6], [7, 8, 9]]);
    expect(() => scoreSeam([], [square(1)])).toThrow(/needs a frame on each side, got 0 and 1/);
    expect(() => scoreSeam([square(1)], [])).toThrow(/needs a frame on each side, got 1 and 0/);
    expect(() => rgbToHsv(new Uint8Array(4))).toThrow(/a multiple of 3\), got 4/);
    expect(() => contentValue(new Float32Array(3), new Float32Array(6))).toThrow(/frames of 3 and 6 values/);
  });
});
