// Randomized blending on real tensors (lib/pipeline/blending.ts, spec §4.2): assembly from chunk x̂₀, the
// per-chunk denoiser helper inside the DPM++ 2M SDE sampler, shared noise on overlaps, and no leaks.
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../lib/errors.js';
import {
  assembleBlended,
  blendCutsFromOffsets,
  blendOwnership,
  createBlendedDenoiser,
  denoiseChunksBlended,
  drawBlendCuts,
  type BlendCuts,
  type ChunkDenoiser,
} from '../../lib/pipeline/blending.js';
import { planStage3Chunks, type Stage3ChunkPlan } from '../../lib/pipeline/chunk-plan.js';
import { Pcg32 } from '../../lib/pipeline/prng.js';
import { SharedNoiseSource } from '../../lib/noise-source.js';
import { sampleDpmpp2mSde } from '../../lib/schedulers/index.js';
import { Tensor } from '../../lib/tensor.js';

const B = 1;
const CH = 2;
const H = 2;
const W = 3;
const PER_FRAME = CH * H * W;

/** Value of element (c, h, w) of latent frame f for tag `tag`: tag·1000 + f + (c·H·W + h·W + w)/100. */
const valueOf = (tag: number, f: number, e: number) => tag * 1000 + f + e / 100;

/** A [B, CH, frames, H, W] float64 tensor whose frame j holds valueOf(tag, first + j, ·). */
function frameTensor(tag: number, first: number, frames: number): Promise<Tensor> {
  const data = new Float64Array(B * CH * frames * H * W);
  for (let c = 0; c < CH; c++) for (let j = 0; j < frames; j++) for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) {
    data[((c * frames + j) * H + h) * W + w] = valueOf(tag, first + j, (c * H + h) * W + w);
  }
  return Tensor.fromArray(data, [B, CH, frames, H, W]);
}

/** Reads frame f of a [1, CH, L, H, W] array as the PER_FRAME values in (c, h, w) order. */
function frameValues(data: ArrayLike<number>, L: number, f: number): number[] {
  const out: number[] = [];
  for (let c = 0; c < CH; c++) for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) out.push(data[((c * L + f) * H + h) * W + w]!);
  return out;
}

/** Checks that every output frame f equals the owner chunk's frame: valueOf(owner + 1, f, ·)·scale. */
async function expectOwnedBy(out: Tensor, plan: Stage3ChunkPlan, cuts: BlendCuts, scale = 1): Promise<void> {
  expect(out.shape).toEqual([B, CH, plan.length, H, W]);
  const data = await out.toTypedArray() as Float64Array;
  const owners = new Int32Array(plan.length);
  for (const r of blendOwnership(plan, cuts)) owners.fill(r.chunk, r.start, r.end);
  const bad: string[] = [];
  for (let f = 0; f < plan.length; f++) {
    const want = Array.from({ length: PER_FRAME }, (_, e) => valueOf(owners[f]! + 1, f, e) * scale);
    const got = frameValues(data, plan.length, f);
    if (got.some((v, e) => Math.abs(v - want[e]!) > 1e-9 * Math.abs(want[e]!))) bad.push(`frame ${f}: ${got[0]} vs ${want[0]}`);
  }
  expect(bad).toEqual([]);
}

describe('assembleBlended', () => {
  it('takes every output frame from its owner chunk (frame-index-valued chunks), freeing its temporaries', async () => {
    const rng = new Pcg32(33);
    for (const L of [72, 80, 41, 25, 10, 24]) {
      const plan = planStage3Chunks({ length: L });
      const chunks = await Promise.all(plan.chunks.map((c) => frameTensor(c.index + 1, c.start, c.length)));
      try {
        for (let step = 0; step < 3; step++) {
          const cuts = drawBlendCuts(plan, rng);
          const before = Tensor.liveCount();
          const out = await assembleBlended(chunks, plan, cuts);
          expect(Tensor.liveCount()).toBe(before + 1);
          await expectOwnedBy(out, plan, cuts);
          out.dispose();
          expect(chunks.every((c) => !c.disposed)).toBe(true); // borrowed
        }
      } finally {
        for (const c of chunks) c.dispose();
      }
    }
  });

  it('fixed cuts: r = [0, 3, 7] on L = 72 gives the documented ownership', async () => {
    const plan = planStage3Chunks({ length: 72 });
    const cuts = blendCutsFromOffsets(plan, [0, 3, 7]);
    const chunks = await Promise.all(plan.chunks.map((c) => frameTensor(c.index + 1, c.start, c.length)));
    using out = await assembleBlended(chunks, plan, cuts);
    const data = await out.toTypedArray() as Float64Array;
    const tagOf = (f: number) => Math.round((frameValues(data, 72, f)[0]! - f) / 1000) - 1;
    expect(Array.from({ length: 72 }, (_, f) => tagOf(f))).toEqual([
      ...Array<number>(16).fill(0), ...Array<number>(19).fill(1), ...Array<number>(20).fill(2), ...Array<number>(17).fill(3),
    ]);
    await expectOwnedBy(out, plan, cuts); // and each frame is the owner's frame f, not a neighbour
    for (const c of chunks) c.dispose();
  });

  it('a lone chunk yields a new tensor equal to it', async () => {
    const plan = planStage3Chunks({ length: 5 });
    using chunk = await frameTensor(1, 0, 5);
    using out = await assembleBlended([chunk], plan, drawBlendCuts(plan, new Pcg32(0)));
    expect(out).not.toBe(chunk);
    expect(Array.from(await out.toFloat32Array())).toEqual(Array.from(await chunk.toFloat32Array()));
  });

  it('rejects a wrong chunk count or chunk length', async () => {
    const plan = planStage3Chunks({ length: 40 });
    const cuts = drawBlendCuts(plan, new Pcg32(0));
    using a = await frameTensor(1, 0, 24);
    using b = await frameTensor(2, 16, 23);
    await expect(assembleBlended([a], plan, cuts)).rejects.toThrow('Expected 2 chunk tensors for `chunkOutputs` but received 1');
    await expect(assembleBlended([a, b], plan, cuts)).rejects.toThrow(InvalidArgumentError);
  });
});

describe('denoiseChunksBlended / createBlendedDenoiser', () => {
  it('each chunk sees its frames of the same x, and the output frames come from the owner chunk', async () => {
    for (const L of [72, 41, 80]) {
      const plan = planStage3Chunks({ length: L });
      using x = await frameTensor(1, 0, L); // x frame f = valueOf(1, f, ·)
      const seen: number[][] = [];
      // chunk k returns (k + 1)·x_chunk: output frame f = (owner + 1)·valueOf(1, f, ·)
      const denoiseChunk: ChunkDenoiser = async (xChunk, sigma, k) => {
        expect(sigma).toBe(0.75);
        const data = await xChunk.toTypedArray() as Float64Array;
        const c = plan.chunks[k]!;
        seen.push(Array.from({ length: c.length }, (_, j) => frameValues(data, c.length, j)[0]! - 1000));
        return Tensor.combine([xChunk], [k + 1]);
      };
      const cutsLog: BlendCuts[] = [];
      const denoise = createBlendedDenoiser(denoiseChunk, { plan, rng: new Pcg32(L), onCuts: (c) => cutsLog.push(c) });
      const before = Tensor.liveCount();
      const out = await denoise(x, 0.75);
      expect(Tensor.liveCount()).toBe(before + 1);
      expect(seen).toEqual(plan.chunks.map((c) => Array.from({ length: c.length }, (_, j) => c.start + j)));
      expect(cutsLog.length).toBe(1);
      // value (owner+1)·valueOf(1, f, e) = (owner+1)·(1000 + f + e/100); compare through expectOwnedBy's formula
      const data = await out.toTypedArray() as Float64Array;
      const owners = new Int32Array(L);
      for (const r of blendOwnership(plan, cutsLog[0]!)) owners.fill(r.chunk, r.start, r.end);
      const bad: number[] = [];
      for (let f = 0; f < L; f++) {
        const got = frameValues(data, L, f);
        if (got.some((v, e) => Math.abs(v - (owners[f]! + 1) * valueOf(1, f, e)) > 1e-9)) bad.push(f);
      }
      expect(bad).toEqual([]);
      out.dispose();
    }
  });

  it('a frame-local denoiser blended over chunks equals the same denoiser on the whole video inside sampleDpmpp2mSde', async () => {
    const L = 41;
    const shape = [1, 2, L, 2, 3];
    const plan = planStage3Chunks({ length: L });
    const source = new SharedNoiseSource({ seed: 0, shape, dtype: 'float64' });
    using z = await source.initialNoise();
    const sigmas = Float64Array.from([4.165, 2.5, 1.2, 0.4, 0]);
    const local = (x: Tensor) => Tensor.combine([x], [0.6]); // frame-local: chunking cannot change it
    const before = Tensor.liveCount();
    using whole = await sampleDpmpp2mSde((x) => local(x), z, sigmas, { inputScale: sigmas[0], noise: source.stepNoise() });
    let calls = 0;
    const blended = createBlendedDenoiser((x) => (calls++, local(x)), { plan, rng: new Pcg32(1) });
    using chunked = await sampleDpmpp2mSde(blended, z, sigmas, { inputScale: sigmas[0], noise: source.stepNoise() });
    expect(Tensor.liveCount()).toBe(before + 2);
    expect(calls).toBe(4 * plan.chunks.length); // every chunk at every step
    const a = await whole.toTypedArray() as Float64Array;
    const b = await chunked.toTypedArray() as Float64Array;
    expect(b.length).toBe(a.length);
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    expect(maxDiff).toBeLessThan(1e-12);
    expect(await chunked.std()).toBeGreaterThan(0.1); // a real sample, not zeros
  });

  it('frees everything when a chunk denoiser fails or returns a bad shape; an identity denoiser works', async () => {
    const plan = planStage3Chunks({ length: 41 });
    using x = await frameTensor(1, 0, 41);
    const cuts = drawBlendCuts(plan, new Pcg32(3));
    const before = Tensor.liveCount();
    await expect(
      denoiseChunksBlended(x, 1, plan, cuts, async (xc, _s, k) => {
        if (k === 2) throw new Error('boom');
        return xc.clone();
      }),
    ).rejects.toThrow('boom');
    expect(Tensor.liveCount()).toBe(before);
    await expect(denoiseChunksBlended(x, 1, plan, cuts, (xc) => xc.narrow(2, 0, 3))).rejects.toThrow(InvalidArgumentError);
    expect(Tensor.liveCount()).toBe(before);
    using same = await denoiseChunksBlended(x, 1, plan, cuts, async (xc) => xc);
    expect(Array.from(await same.toTypedArray() as Float64Array)).toEqual(Array.from(await x.toTypedArray() as Float64Array));
    expect(Tensor.liveCount()).toBe(before + 1);
    const lone = planStage3Chunks({ length: 41, chunkFrames: 64 });
    using copy = await denoiseChunksBlended(x, 1, lone, drawBlendCuts(lone, new Pcg32(0)), async (xc) => xc);
    expect(copy).not.toBe(x);
    expect(x.disposed).toBe(false);
  });
});

describe('shared noise on overlapping chunks', () => {
  it('neighbouring chunks cut from a SharedNoiseSource field see identical noise on their overlap', async () => {
    const L = 80;
    const plan = planStage3Chunks({ length: L });
    const source = new SharedNoiseSource({ seed: 0, shape: [1, 2, L, 2, 3] });
    using field = await source.stepNoiseFor(3);
    const perChunk: Float32Array[] = [];
    for (const c of plan.chunks) {
      using fromField = await field.narrow(2, c.start, c.length); // what denoiseChunksBlended hands the chunk
      using direct = await source.stepNoiseFor(3, c.start, c.length); // materialised for the chunk alone
      const a = await fromField.toFloat32Array();
      expect(Array.from(await direct.toFloat32Array())).toEqual(Array.from(a));
      perChunk.push(a);
    }
    for (const b of plan.boundaries) {
      const prev = plan.chunks[b.index - 1]!;
      const cur = plan.chunks[b.index]!;
      for (let f = b.start; f < b.end; f++) {
        const p = frameValues(perChunk[b.index - 1]!, prev.length, f - prev.start);
        const q = frameValues(perChunk[b.index]!, cur.length, f - cur.start);
        expect(q).toEqual(p);
      }
    }
    // and the noise is not constant across frames
    expect(frameValues(perChunk[0]!, 24, 0)).not.toEqual(frameValues(perChunk[0]!, 24, 1));
  });
});
