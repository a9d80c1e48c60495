// Pure part of randomized blending (lib/pipeline/blending.ts, lib/pipeline/prng.ts): the PCG32 generator,
// the cut law U{0..O_k−1} (spec §4.2) and the frame ownership partition for every length.
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../lib/errors.js';
import { blendCutsFromOffsets, blendOwnership, drawBlendCuts, type BlendCuts } from '../../lib/pipeline/blending.js';
import { planStage3Chunks, type Stage3ChunkPlan } from '../../lib/pipeline/chunk-plan.js';
import { Pcg32 } from '../../lib/pipeline/prng.js';

/** Owner of each latent frame from the ownership ranges; -1 = none, -2 = claimed twice. */
function ownerMap(plan: Stage3ChunkPlan, cuts: BlendCuts): Int32Array {
  const owner = new Int32Array(plan.length).fill(-1);
  for (const r of blendOwnership(plan, cuts)) {
    for (let f = r.start; f < r.end; f++) owner[f] = owner[f] === -1 ? r.chunk : -2;
  }
  return owner;
}

/** The official assembly (spec §4.2): chunk 0 writes all its frames, chunk k writes [start_k + r_k, end_k); last write wins. */
function officialOwnerMap(plan: Stage3ChunkPlan, offsets: readonly number[]): Int32Array {
  const owner = new Int32Array(plan.length).fill(-1);
  plan.chunks.forEach((c, k) => {
    for (let f = c.start + (k === 0 ? 0 : offsets[k - 1]!); f < c.end; f++) owner[f] = k;
  });
  return owner;
}

describe('Pcg32', () => {
  it('reproduces the PCG32 reference sequence (pcg32-demo: seed 42, stream 54)', () => {
    const rng = new Pcg32(42, 54);
    const got = Array.from({ length: 6 }, () => rng.nextUint32());
    expect(got).toEqual([0xa15c02b7, 0x7b47f409, 0xba1d3330, 0x83d2f293, 0xbfa4784b, 0xcbed606e]);
  });

  it('is deterministic per (seed, stream) and differs across seeds and streams', () => {
    const draw = (r: Pcg32) => Array.from({ length: 16 }, () => r.nextUint32());
    expect(draw(new Pcg32(33))).toEqual(draw(new Pcg32(33)));
    expect(draw(new Pcg32(33))).not.toEqual(draw(new Pcg32(34)));
    expect(draw(new Pcg32(33, 1))).not.toEqual(draw(new Pcg32(33, 2)));
    expect(draw(new Pcg32(2n ** 64n + 5n))).toEqual(draw(new Pcg32(5))); // seeds are taken mod 2^64
  });

  it('round-trips its state through JSON and continues identically', () => {
    const a = new Pcg32(666);
    for (let i = 0; i < 37; i++) a.uniformInt(8);
    const saved = JSON.parse(JSON.stringify(a.getState()));
    const b = Pcg32.fromState(saved);
    const c = new Pcg32(1);
    c.setState(saved);
    const next = Array.from({ length: 50 }, () => a.uniformInt(1000));
    expect(Array.from({ length: 50 }, () => b.uniformInt(1000))).toEqual(next);
    expect(Array.from({ length: 50 }, () => c.uniformInt(1000))).toEqual(next);
    expect(() => b.setState({ state: '1', increment: '2' })).toThrow(InvalidArgumentError); // even increment
    expect(() => b.setState({ state: 'x', increment: '1' })).toThrow(InvalidArgumentError);
    expect(() => b.setState({ state: String(2n ** 64n), increment: '1' })).toThrow(InvalidArgumentError);
  });

  it('uniformInt(n) stays in [0, n) and is close to uniform', () => {
    const rng = new Pcg32(7);
    for (const n of [1, 2, 3, 8, 23]) {
      const counts = new Array<number>(n).fill(0);
      const draws = 2000 * n;
      for (let i = 0; i < draws; i++) {
        const v = rng.uniformInt(n);
        if (!(Number.isInteger(v) && v >= 0 && v < n)) throw new Error(`uniformInt(${n}) gave ${v}`);
        counts[v]! += 1;
      }
      // 2000 expected per bin: ±10% is > 4.4 sigma
      for (const c of counts) expect(Math.abs(c - 2000)).toBeLessThan(200);
    }
    expect(() => rng.uniformInt(0)).toThrow('Expected an integer in [1, 2^32] for `n` but received 0');
    expect(() => new Pcg32(-1)).toThrow(InvalidArgumentError);
  });
});

describe('drawBlendCuts', () => {
  it('draws r_k in 0..O−1 on every regular boundary, covering all values about uniformly (official law)', () => {
    const plan = planStage3Chunks({ length: 72 }); // 4 chunks, 3 boundaries of overlap 8
    const rng = new Pcg32(33);
    const counts = plan.boundaries.map(() => new Array<number>(8).fill(0));
    for (let step = 0; step < 4000; step++) {
      const cuts = drawBlendCuts(plan, rng);
      expect(cuts.offsets.length).toBe(3);
      cuts.offsets.forEach((r, i) => {
        counts[i]![r]! += 1;
        expect(cuts.positions[i + 1]).toBe(plan.boundaries[i]!.start + r);
      });
      expect(cuts.positions[0]).toBe(0);
    }
    for (const perBoundary of counts) {
      expect(perBoundary.every((c) => c > 0)).toBe(true); // covers 0..7
      for (const c of perBoundary) expect(Math.abs(c - 500)).toBeLessThan(100); // 500 expected, σ ≈ 21
    }
  });

  it('is deterministic for a seed, one uniformInt per boundary per step, and resumes from a saved state', () => {
    const plan = planStage3Chunks({ length: 200 });
    const run = (rng: Pcg32, steps: number) => Array.from({ length: steps }, () => drawBlendCuts(plan, rng).offsets);
    const a = new Pcg32(33);
    const first = run(a, 10);
    expect(run(new Pcg32(33), 10)).toEqual(first);
    expect(run(new Pcg32(34), 10)).not.toEqual(first);
    const saved = a.getState();
    const rest = run(a, 20);
    expect(run(Pcg32.fromState(saved), 20)).toEqual(rest);
    // draws in boundary order, one uniformInt(O_k − lo_k) each: replaying the raw stream gives the same offsets
    const raw = new Pcg32(33);
    const replay = plan.boundaries.map((b) => raw.uniformInt(b.overlap));
    expect(replay).toEqual(first[0]);
  });

  it('keeps cut positions strictly increasing on the tail boundary that reaches back into chunk k−2', () => {
    const plan = planStage3Chunks({ length: 41 }); // [0,24) [16,40) [17,41): the tail overlaps chunk 0 too
    const rng = new Pcg32(5);
    const seen = new Set<number>();
    for (let step = 0; step < 3000; step++) {
      const { offsets, positions } = drawBlendCuts(plan, rng);
      expect(positions[1]!).toBeLessThan(positions[2]!);
      expect(offsets[1]!).toBeGreaterThanOrEqual(Math.max(0, positions[1]! + 1 - 17));
      expect(offsets[1]!).toBeLessThanOrEqual(22); // O_k − 1 = 23 − 1
      seen.add(offsets[1]!);
    }
    expect(seen.size).toBe(23); // every offset 0..22 is reachable
  });

  it('blendCutsFromOffsets replays drawn cuts and rejects offsets outside the law', () => {
    const plan = planStage3Chunks({ length: 80 });
    const cuts = drawBlendCuts(plan, new Pcg32(1));
    expect(blendCutsFromOffsets(plan, cuts.offsets)).toEqual(cuts);
    expect(blendCutsFromOffsets(planStage3Chunks({ length: 40 }), [7]).positions).toEqual([0, 23]);
    expect(() => blendCutsFromOffsets(plan, [0, 0, 0, 16])).toThrow(
      'Expected an integer in [0, 15] for `offsets[3]` but received 16',
    );
    expect(() => blendCutsFromOffsets(plan, [0])).toThrow('Expected 4 offsets for `offsets` but received 1');
    // tail boundary of L = 41: with r_1 = 7 (p_1 = 23), r_2 must be ≥ 7
    expect(() => blendCutsFromOffsets(planStage3Chunks({ length: 41 }), [7, 6])).toThrow(
      'Expected an integer in [7, 22] for `offsets[1]` but received 6',
    );
  });
});

describe('blendOwnership', () => {
  it('the previous chunk owns the first r_k overlap frames and the new chunk the rest', () => {
    const plan = planStage3Chunks({ length: 72 });
    const cuts = blendCutsFromOffsets(plan, [0, 3, 7]);
    expect(blendOwnership(plan, cuts)).toEqual([
      { chunk: 0, start: 0, end: 16, localStart: 0, count: 16 }, // r_1 = 0: chunk 1 owns the whole overlap
      { chunk: 1, start: 16, end: 35, localStart: 0, count: 19 },
      { chunk: 2, start: 35, end: 55, localStart: 3, count: 20 },
      { chunk: 3, start: 55, end: 72, localStart: 7, count: 17 }, // r_3 = 7: chunk 3 owns only the last overlap frame
    ]);
    const owner = ownerMap(plan, cuts);
    expect(Array.from(owner.subarray(48, 56))).toEqual([2, 2, 2, 2, 2, 2, 2, 3]);
    expect(Array.from(owner.subarray(32, 40))).toEqual([1, 1, 1, 2, 2, 2, 2, 2]);
  });

  it('a lone chunk owns everything', () => {
    const plan = planStage3Chunks({ length: 10 });
    const cuts = drawBlendCuts(plan, new Pcg32(0));
    expect(cuts).toEqual({ offsets: [], positions: [0] });
    expect(blendOwnership(plan, cuts)).toEqual([{ chunk: 0, start: 0, end: 10, localStart: 0, count: 10 }]);
  });

  it('every latent frame is owned by exactly one chunk, every chunk owns ≥ 1 frame, for L = 1..400 and several C/O', () => {
    const rng = new Pcg32(2024);
    for (const [C, O] of [[24, 8], [24, 0], [24, 12], [24, 20], [16, 4], [8, 7], [3, 1]] as const) {
      const bad: string[] = [];
      for (let L = 1; L <= 400; L++) {
        const plan = planStage3Chunks({ length: L, chunkFrames: C, overlapFrames: O });
        for (let step = 0; step < 3; step++) {
          const cuts = drawBlendCuts(plan, rng);
          const owner = ownerMap(plan, cuts);
          if (owner.some((o) => o < 0)) bad.push(`L=${L}: frame without a single owner`);
          const ranges = blendOwnership(plan, cuts);
          if (ranges.some((r) => r.count < 1)) bad.push(`L=${L}: empty chunk`);
          for (const [k, b] of plan.boundaries.entries()) {
            const r = cuts.offsets[k]!;
            const p = b.start + r;
            if (b.overlap > 0 && !(r >= 0 && r < b.overlap)) bad.push(`L=${L}: r=${r} outside 0..${b.overlap - 1}`);
            // the first r_k overlap frames belong to earlier chunks, frame p_k to the new chunk
            for (let f = b.start; f < p; f++) if (owner[f]! >= b.index) bad.push(`L=${L}: frame ${f} owned by ${owner[f]}`);
            if (owner[p] !== b.index) bad.push(`L=${L}: cut frame ${p} owned by ${owner[p]} not ${b.index}`);
          }
          // identical to the official last-writer-wins assembly whenever the official law is in force
          if (C >= 2 * O && !plan.tailAligned) {
            const official = officialOwnerMap(plan, cuts.offsets);
            if (official.some((o, f) => o !== owner[f])) bad.push(`L=${L}: differs from the official assembly`);
          }
        }
      }
      expect(bad.slice(0, 5), `C=${C} O=${O}`).toEqual([]);
    }
  });

  it('our cuts never make the last-writer-wins assembly differ, even on the tail boundary', () => {
    // Since cut positions are strictly increasing, writing chunks in order with the official rule gives our map.
    const rng = new Pcg32(9);
    for (const L of [41, 47, 55, 80, 90, 100, 137]) {
      const plan = planStage3Chunks({ length: L });
      for (let step = 0; step < 200; step++) {
        const cuts = drawBlendCuts(plan, rng);
        expect(Array.from(officialOwnerMap(plan, cuts.offsets))).toEqual(Array.from(ownerMap(plan, cuts)));
      }
    }
  });
});
