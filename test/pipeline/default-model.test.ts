// The embedded default model (models/default: the tiny architecture trained on the synthetic world,
// models/train) draws what the prompt says: the object's colour on the background's colour, moving the
// prompt's way, across stage 1 and stage-2 windows. Real weights, real libtorch; the detectors are the
// ones of bench/quality/metrics.py reduced to colour and direction (nearest world colour per pixel).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { StreamingT2VPipeline, type GeneratedFrame } from '../../lib/index.js';
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

/** Wrap-aware mean x of the pixels labelled `k` (frame width `w`), or undefined when there are none. */
function centroidX(lab: Uint8Array, k: number, w: number): number | undefined {
  let s = 0;
  let c = 0;
  let n = 0;
  for (let p = 0; p < lab.length; p++) {
    if (lab[p] !== k) continue;
    const a = (((p % w) + 0.5) / w) * 2 * Math.PI;
    s += Math.sin(a);
    c += Math.cos(a);
    n++;
  }
  return n === 0 ? undefined : ((((Math.atan2(s, c) / (2 * Math.PI)) * w) % w) + w) % w;
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

  it('draws a red object on a blue background that moves right, through stage 1 and two stage-2 windows', async () => {
    const frames: GeneratedFrame[] = [];
    for await (const f of pipe.generate({ prompt: 'a red circle moving to the right on a plain blue background', numFrames: 32, seed: 5, enhance: false })) frames.push(f);
    expect(frames.length).toBe(32);
    const red = NAMES.indexOf('red');
    const blue = NAMES.indexOf('blue');
    const xs: number[] = [];
    for (const f of frames) {
      const lab = labels(f.data);
      const counts = NAMES.map((_, k) => lab.reduce((n, v) => n + (v === k ? 1 : 0), 0));
      // the background (most pixels) is blue; the most frequent other colour is red, and it is a visible object
      expect(counts.indexOf(Math.max(...counts))).toBe(blue);
      const others = counts.map((n, k) => (k === blue ? -1 : n));
      expect(others.indexOf(Math.max(...others))).toBe(red);
      expect(counts[red]! / lab.length).toBeGreaterThan(0.02);
      xs.push(centroidX(lab, red, f.width)!);
    }
    // mean wrap-aware step of the red centroid points right
    let step = 0;
    for (let i = 1; i < xs.length; i++) step += ((xs[i]! - xs[i - 1]! + 96) % 64) - 32;
    expect(step / (xs.length - 1)).toBeGreaterThan(0.2);
  });
});
