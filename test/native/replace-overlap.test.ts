// Overlap replacement in stage-2 windows (lib/pipeline/replace-overlap.ts, option stage2.replaceOverlap) on real
// libtorch tensors: the replaced latents against a plain-JS computation of √ᾱ·z + √(1−ᾱ)·ε with the same noise,
// the typed refusals, and the option inside runStage2Window on the tiny model (0 = the official path, bit for bit).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { InvalidArgumentError } from '../../lib/errors.js';
import { Generator, Tensor } from '../../lib/index.js';
import { loadPipelineModels, type LoadedModels } from '../../lib/pipeline/model-adapter.js';
import { encodeKnownFrames, replaceKnownFrames } from '../../lib/pipeline/replace-overlap.js';
import { runStage2Window, stage2Context } from '../../lib/pipeline/stage2.js';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const maxDiff = (x: ArrayLike<number>, y: ArrayLike<number>) => Array.from(x).reduce((m, v, i) => Math.max(m, Math.abs(v - y[i]!)), 0);

describe('replaceKnownFrames (tolerance 1e-6, float32)', () => {
  const [C, F, FC, H, W] = [4, 6, 2, 2, 3];
  const x = Float32Array.from({ length: C * F * H * W }, (_, i) => Math.sin(i * 0.37));
  const known = Float32Array.from({ length: C * FC * H * W }, (_, i) => 2 + Math.cos(i * 0.11));

  it('frames 0..Fc-1 become √ᾱ·known + √(1−ᾱ)·ε (ε: the generator next draw), the rest is x', async () => {
    const alpha = 0.3;
    using xt = await Tensor.fromArray(x, [1, C, F, H, W]);
    using kt = await Tensor.fromArray(known, [1, C, FC, H, W]);
    using gen = new Generator(11);
    using out = await replaceKnownFrames(xt, kt, alpha, gen);
    using same = new Generator(11);
    using epsT = await same.randn([1, C, FC, H, W]);
    const eps = await epsT.toFloat32Array();
    const got = await out.toFloat32Array();
    expect(out.shape).toEqual([1, C, F, H, W]);
    const plane = H * W;
    const want = new Float32Array(got.length);
    for (let c = 0; c < C; c++) for (let f = 0; f < F; f++) for (let k = 0; k < plane; k++) {
      const i = (c * F + f) * plane + k;
      const j = (c * FC + f) * plane + k;
      want[i] = f < FC ? Math.sqrt(alpha) * known[j]! + Math.sqrt(1 - alpha) * eps[j]! : x[i]!;
    }
    expect(maxDiff(got, want)).toBeLessThan(1e-6);
    // ᾱ = 1 (no noise left): the known latents themselves
    using exact = await replaceKnownFrames(xt, kt, 1, gen);
    using head = await exact.narrow(2, 0, FC);
    expect(maxDiff(await head.toFloat32Array(), known)).toBeLessThan(1e-6);
  });

  it('refuses mismatched shapes and ᾱ outside (0, 1] with typed errors', async () => {
    using xt = await Tensor.zeros([1, C, F, H, W]);
    using wide = await Tensor.zeros([1, C, FC, H, W + 1]);
    using all = await Tensor.zeros([1, C, F, H, W]);
    using kt = await Tensor.zeros([1, C, FC, H, W]);
    using gen = new Generator(1);
    await expect(replaceKnownFrames(xt, wide, 0.5, gen)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(replaceKnownFrames(xt, all, 0.5, gen)).rejects.toThrow('Expected [B, C, F, h, w] latents and [B, C, Fc < F, h, w] known latents for `replaceKnownFrames` but received [1, 4, 6, 2, 3] and [1, 4, 6, 2, 3]');
    await expect(replaceKnownFrames(xt, kt, 0, gen)).rejects.toThrow('Expected ᾱ in (0, 1] for `replaceKnownFrames` but received 0');
    await expect(replaceKnownFrames(xt, kt, Number.NaN, gen)).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('stage2.replaceOverlap inside runStage2Window (tiny model)', () => {
  let models: LoadedModels;
  beforeAll(async () => {
    models = await loadPipelineModels({ device: 'cpu', verifyChecksums: false, loadEnhancer: false });
  });
  afterAll(() => models?.dispose());

  it('the known latents are the stage-2 VAE encoder posterior mean of the conditioning frames', async () => {
    using cond = await Tensor.full([1, 3, 8, 64, 64], 0.25);
    using known = await encodeKnownFrames(models.module('vae_encoder'), cond);
    const out = await models.module('vae_encoder').forward([cond]);
    const [mean, std] = out as Tensor[];
    try {
      expect(known.shape).toEqual([1, 4, 8, 8, 8]);
      expect(maxDiff(await known.toFloat32Array(), await mean!.toFloat32Array())).toBe(0);
    } finally {
      mean!.dispose();
      std!.dispose();
    }
  });

  it('0 (and a share that rounds to no step) is the official window bit for bit; 0.5 and 1 change it', async () => {
    using text = await Tensor.randn([2, 77, 64], 1);
    using grey = await Tensor.randn([1, 16, 64], 2);
    using anchor = await Tensor.randn([1, 16, 64], 3);
    using context = await stage2Context(text, grey, anchor);
    using condFrames = await Tensor.full([1, 3, 8, 64, 64], 0.4);
    const run = async (replaceOverlap: number | undefined) => {
      using gen = new Generator(5);
      using out = await runStage2Window(models, { context, condFrames, generator: gen, steps: 2, guidance: 7.5, eta: 1, replaceOverlap });
      return out.toFloat32Array();
    };
    const official = await run(undefined);
    expect(maxDiff(await run(0), official)).toBe(0);
    expect(maxDiff(await run(0.2), official)).toBe(0); // round(0.2 · 2 steps) = 0 steps replaced
    const half = await run(0.5);
    const every = await run(1);
    expect(maxDiff(half, official)).toBeGreaterThan(1e-6);
    expect(maxDiff(every, half)).toBeGreaterThan(1e-6);
    expect(every.every(Number.isFinite)).toBe(true);
  });
});
