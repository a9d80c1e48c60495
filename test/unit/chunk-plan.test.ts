// Pure frame bookkeeping (lib/pipeline/chunk-plan.ts): stage-2 window counts against the official formula
// (spec §1.5) and the documented rule for other N; stage-3 chunk coverage for every L (spec §4.2, G10).
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../lib/errors.js';
import { planStage2Windows, planStage3Chunks } from '../../lib/pipeline/chunk-plan.js';

describe('planStage2Windows', () => {
  it('matches the official loop (n = (N−8)//8, 8n+8 frames, n−1 model calls) when N % 8 == 0', () => {
    for (let N = 16; N <= 1200; N += 8) {
      const n = Math.floor((N - 8) / 8);
      const plan = planStage2Windows({ numFrames: N });
      expect(plan.windows).toBe(n - 1);
      expect(plan.totalGenerated).toBe(8 * n + 8);
      expect(plan.trimmedTail).toBe(0);
    }
    expect(planStage2Windows({ numFrames: 24 }).windows).toBe(1); // spec: 24 → 1 model call
    expect(planStage2Windows({ numFrames: 80 }).windows).toBe(8);
    expect(planStage2Windows({ numFrames: 1200 }).windows).toBe(148);
  });

  it('rounds up and truncates the last window for other N', () => {
    const p = planStage2Windows({ numFrames: 30 });
    expect(p).toMatchObject({ windows: 2, framesPerWindow: 8, totalGenerated: 32, trimmedTail: 2 });
    expect(p.segments).toEqual([
      { window: 0, keepStart: 0, keepCount: 16, outputStart: 0 },
      { window: 1, keepStart: 8, keepCount: 8, outputStart: 16 },
      { window: 2, keepStart: 8, keepCount: 6, outputStart: 24 },
    ]);
    expect(planStage2Windows({ numFrames: 17 })).toMatchObject({ windows: 1, totalGenerated: 24, trimmedTail: 7 });
  });

  it('N ≤ 16 uses stage 1 only, truncated', () => {
    for (let N = 1; N <= 16; N++) {
      const p = planStage2Windows({ numFrames: N });
      expect(p).toMatchObject({ windows: 0, totalGenerated: 16, trimmedTail: 16 - N });
      expect(p.segments).toEqual([{ window: 0, keepStart: 0, keepCount: N, outputStart: 0 }]);
    }
  });

  it('segments tile [0, N) exactly for every N and window geometry', () => {
    for (const [W, Fc] of [[16, 8], [16, 4], [8, 7], [2, 1]] as const) {
      const bad: string[] = [];
      for (let N = 1; N <= 300; N++) {
        const p = planStage2Windows({ numFrames: N, windowFrames: W, conditioningFrames: Fc });
        let next = 0;
        for (const s of p.segments) {
          if (s.outputStart !== next || s.keepCount < 1 || s.keepStart + s.keepCount > W) bad.push(`N=${N} window ${s.window}`);
          next += s.keepCount;
        }
        if (next !== N || p.segments.length !== p.windows + 1 || p.totalGenerated - p.trimmedTail !== N) bad.push(`N=${N} totals`);
        if (!(p.trimmedTail >= 0 && p.trimmedTail < (p.windows === 0 ? W : W - Fc))) bad.push(`N=${N} tail ${p.trimmedTail}`);
      }
      expect(bad, `W=${W} F_cond=${Fc}`).toEqual([]);
    }
  });

  it('validates its options with the standard message shape', () => {
    for (const bad of [0, -3, 2.5, Number.NaN, '16' as unknown as number]) {
      expect(() => planStage2Windows({ numFrames: bad })).toThrow(InvalidArgumentError);
    }
    expect(() => planStage2Windows({ numFrames: 0 })).toThrow('Expected an integer ≥ 1 for `numFrames` but received 0');
    expect(() => planStage2Windows({ numFrames: 20, conditioningFrames: 16 })).toThrow(
      'Expected an integer in [1, 15] for `conditioningFrames` but received 16',
    );
  });
});

describe('planStage3Chunks', () => {
  it('equals the official regular plan when (L − O) % S == 0', () => {
    const p = planStage3Chunks({ length: 72 });
    expect(p.chunks.map((c) => [c.start, c.end])).toEqual([[0, 24], [16, 40], [32, 56], [48, 72]]);
    expect(p.boundaries.map((b) => [b.start, b.end, b.overlap])).toEqual([[16, 24, 8], [32, 40, 8], [48, 56, 8]]);
    expect(p.tailAligned).toBe(false);
    expect(p.stride).toBe(16);
  });

  it('adds one end-aligned chunk when the regular chunks stop short of L', () => {
    const p = planStage3Chunks({ length: 80 }); // official would trim 80 → 72
    expect(p.chunks.map((c) => [c.start, c.end])).toEqual([[0, 24], [16, 40], [32, 56], [48, 72], [56, 80]]);
    expect(p.boundaries.at(-1)).toEqual({ index: 4, start: 56, end: 72, overlap: 16 });
    expect(p.tailAligned).toBe(true);
  });

  it('L ≤ C gives one chunk of length L', () => {
    for (let L = 1; L <= 24; L++) {
      const p = planStage3Chunks({ length: L });
      expect(p.chunks).toEqual([{ index: 0, start: 0, end: L, length: L }]);
      expect(p.boundaries).toEqual([]);
    }
  });

  it('covers every frame for L = 1..400 and several C/O, with overlaps ≥ O and chunks of length C', () => {
    // Plain checks collected into a list (one expect per geometry keeps this fast).
    let plans = 0;
    for (const [C, O] of [[24, 8], [24, 0], [24, 23], [16, 4], [8, 5], [1, 0], [5, 2], [112, 32]] as const) {
      const bad: string[] = [];
      for (let L = 1; L <= 400; L++) {
        const p = planStage3Chunks({ length: L, chunkFrames: C, overlapFrames: O });
        plans++;
        const fail = (why: string) => bad.push(`L=${L}: ${why}`);
        const cover = new Int32Array(L);
        p.chunks.forEach((c, k) => {
          if (c.index !== k) fail(`index ${c.index} at ${k}`);
          if (c.length !== (L <= C ? L : C) || c.end - c.start !== c.length) fail(`chunk ${k} length ${c.length}`);
          for (let f = c.start; f < c.end; f++) cover[f]! += 1;
          const prev = p.chunks[k - 1];
          if (prev !== undefined && !(c.start > prev.start && c.end > prev.end)) fail(`chunk ${k} not after ${k - 1}`);
        });
        if (!cover.every((n) => n >= 1)) fail('uncovered frame');
        if (p.chunks[0]!.start !== 0 || p.chunks.at(-1)!.end !== L) fail('ends');
        if (p.boundaries.length !== p.chunks.length - 1) fail('boundary count');
        p.boundaries.forEach((b, i) => {
          if (b.index !== i + 1 || b.overlap !== p.chunks[i]!.end - p.chunks[i + 1]!.start) fail(`boundary ${i}`);
          const isTail = p.tailAligned && i === p.boundaries.length - 1;
          if (isTail ? !(b.overlap > O && b.overlap < C) : b.overlap !== O) fail(`overlap ${b.overlap} at boundary ${i}`);
        });
        // the tail chunk appears exactly when regular chunks cannot reach L: (L − O) % S != 0
        if (L > C && p.tailAligned !== ((L - O) % (C - O) !== 0)) fail('tailAligned');
      }
      expect(bad, `C=${C} O=${O}`).toEqual([]);
    }
    expect(plans).toBe(3200);
    // spot values: L = 41 → chunks [0,24), [16,40) and the tail [17,41) (overlap 23)
    expect(planStage3Chunks({ length: 41 }).chunks.map((c) => c.start)).toEqual([0, 16, 17]);
  });

  it('validates 0 ≤ O < C', () => {
    expect(() => planStage3Chunks({ length: 50, overlapFrames: 24 })).toThrow(
      'Expected an integer in [0, 23] for `overlapFrames` but received 24',
    );
    expect(() => planStage3Chunks({ length: 50, overlapFrames: -1 })).toThrow(InvalidArgumentError);
    expect(() => planStage3Chunks({ length: 0 })).toThrow('Expected an integer ≥ 1 for `length` but received 0');
    expect(() => planStage3Chunks({ length: 10, chunkFrames: 0 })).toThrow(InvalidArgumentError);
  });
});
