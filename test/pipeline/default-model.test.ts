// The embedded default model (models/default: the tiny architecture trained on the synthetic world,
// models/train) draws the prompt's object colour, across stage 1 and stage-2 windows. Real weights, real
// libtorch; the detector is bench/quality/metrics.py's colour labelling (nearest world colour per pixel).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { StreamingT2VPipeline } from '../../lib/index.js';
import { stage3StartScale } from '../../lib/pipeline/enhance-run.js';
import { defaultModelDir } from '../../lib/pipeline/model-adapter.js';
import { ROOT } from '../helpers/dist-build.js';

vi.setConfig({ testTimeout: 240_000, hookTimeout: 120_000 });

/** models/world.py RGB table (0..1) of the core world's colours. */
const RGB: Record<string, [number, number, number]> = {
  red: [0.86, 0.12, 0.12], green: [0.15, 0.72, 0.22], blue: [0.15, 0.30, 0.90], yellow: [0.95, 0.86, 0.15],
  purple: [0.58, 0.22, 0.80], white: [0.96, 0.96, 0.96], pink: [0.98, 0.52, 0.75], gray: [0.50, 0.50, 0.52],
  black: [0.06, 0.06, 0.08], cyan: [0.15, 0.80, 0.85],
};
const NAMES = Object.keys(RGB);

/** Per pixel, the index into NAMES of the nearest world colour. */
function labels(frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(frame.length / 3);
  for (let p = 0; p < out.length; p++) {
    let best = 0;
    let bestD = Infinity;
    for (let k = 0; k < NAMES.length; k++) {
      const c = RGB[NAMES[k]!]!;
      const d = (frame[3 * p]! / 255 - c[0]) ** 2 + (frame[3 * p + 1]! / 255 - c[1]) ** 2 + (frame[3 * p + 2]! / 255 - c[2]) ** 2;
      if (d < bestD) [best, bestD] = [k, d];
    }
    out[p] = best;
  }
  return out;
}

const trained = existsSync(join(ROOT, 'models', 'default', 'manifest.json'));

describe.runIf(trained)('the embedded default model (models/default)', () => {
  let pipe: StreamingT2VPipeline;
  beforeAll(async () => {
    pipe = await StreamingT2VPipeline.load({ device: 'cpu', threads: 1, loadEnhancer: false });
  });
  afterAll(() => pipe?.dispose());

  it('is what the package uses when no modelDir is given, and was trained (not random weights)', () => {
    expect(defaultModelDir()).toBe(join(ROOT, 'models', 'default'));
    const manifest = JSON.parse(readFileSync(join(ROOT, 'models', 'default', 'manifest.json'), 'utf8')) as { name: string; created_by: { weights: string } };
    expect(manifest.name).toBe('default');
    expect(manifest.created_by.weights).toMatch(/^given/);
  });

  /** Per-frame label counts of a 32-frame generation (stage 1 + two stage-2 windows). */
  async function labelCounts(prompt: string): Promise<number[][]> {
    const out: number[][] = [];
    for await (const f of pipe.generate({ prompt, numFrames: 32, seed: 5, enhance: false })) {
      const lab = labels(f.data);
      out.push(NAMES.map((_, k) => lab.reduce((n, v) => n + (v === k ? 1 : 0), 0)));
    }
    return out;
  }

  // What the 60-minute CPU model reliably does (models/train/README.md): the prompt's object colour, as a
  // visible object, in stage 1 and stage 2. Backgrounds come out near the right hue, shapes
  // as blobs, and the direction is not reliable yet, so those are not asserted here.
  for (const [prompt, colour, background] of [
    ['a red circle moving to the right on a plain blue background', 'red', 'blue'],
    ['a yellow square moving down on a plain black background', 'yellow', 'black'],
  ] as const) {
    it(`"${prompt}": ${colour} is the object colour in at least 80 % of the frames`, async () => {
      const counts = await labelCounts(prompt);
      expect(counts.length).toBe(32);
      const objectColours = ['red', 'green', 'blue', 'yellow', 'white', 'purple'].filter((c) => c !== background);
      let right = 0;
      for (const c of counts) {
        const total = c.reduce((a, b) => a + b, 0);
        const best = objectColours.reduce((x, y) => (c[NAMES.indexOf(y)]! > c[NAMES.indexOf(x)]! ? y : x));
        const share = c[NAMES.indexOf(colour)]! / total;
        if (best === colour && share > 0.02 && share < 0.6) right++; // a visible object, not the whole frame
      }
      console.log(`${prompt}: ${right}/${counts.length} frames`);
      // measured: 32/32 frames yellow-on-black, 28/32 red-on-blue (a teal patch of background labelled green wins
      // four frames), the same with run 2's and run 3's stage 2; the random-weight models/tiny gets 0/32 and 1/32
      expect(right / counts.length).toBeGreaterThanOrEqual(0.8);
    });
  }
});

// Stage 3 away from the official noise level: the start latent is scaled VP-consistently (z / α), not by
// modelscope's σ_ve(599) quirk (spec G12, kept at t0 = 599 only; lib/pipeline/generate-frames.ts).
describe('stage-3 start scaling (spec G12)', () => {
  it('is σ_ve at the official start t0 = 599 and 1/α elsewhere', () => {
    expect(stage3StartScale(599, 0.234, 4.15)).toBe(4.15);
    expect(stage3StartScale(19, 0.998, 0.06)).toBeCloseTo(1 / 0.998, 12);
    expect(stage3StartScale(598, 0.25, 3.9)).toBe(4);
  });

  it.runIf(trained)('keeps the video at a low noise level (SDEdit with little noise changes little)', async () => {
    await using pipe = await StreamingT2VPipeline.load({ device: 'cpu', threads: 1 });
    const preview: Uint8Array[] = [];
    const final: { data: Uint8Array; width: number; height: number }[] = [];
    for await (const f of pipe.generate({
      prompt: 'a red circle moving to the right on a plain blue background', numFrames: 16, seed: 3,
      enhance: { noiseLevel: 20, steps: 10 },
    })) {
      if (f.stage === 'preview') preview.push(f.data);
      else final.push(f);
    }
    expect(final.length).toBe(16);
    // mean |final − preview upscaled 2x (nearest)| over all pixels and channels
    let sum = 0;
    let n = 0;
    final.forEach((q, i) => {
      const p = preview[i]!;
      const pw = q.width / 2;
      for (let y = 0; y < q.height; y++) {
        for (let x = 0; x < q.width; x++) {
          for (let c = 0; c < 3; c++) {
            sum += Math.abs(q.data[(y * q.width + x) * 3 + c]! - p[((y >> 1) * pw + (x >> 1)) * 3 + c]!);
            n++;
          }
        }
      }
    });
    console.log(`stage 3 at noise level 20: mean |final - preview| ${(sum / n).toFixed(1)} grey levels`);
    // measured 17.8 grey levels (the enhancer VAE round trip and nearest-vs-bicubic upscaling); with the
    // quirk at this level the start latent is scaled by 0.06 and the difference is 71
    expect(sum / n).toBeLessThan(30);
  });
});
