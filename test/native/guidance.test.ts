// Classifier-free guidance and guidance rescale on real tensors, against values worked out by hand.
// Tolerance: float64 tensors, 1e-12 absolute (values are O(10)).
import { describe, expect, it } from 'vitest';
import { classifierFreeGuidance, guidanceFromBatch, guidanceRescaleFactor } from '../../lib/guidance.js';
import { Tensor } from '../../lib/tensor.js';

const t64 = (v: number[], shape: number[] = [1, v.length]) => Tensor.fromArray(Float64Array.from(v), shape);
async function expectValues(t: Tensor, expected: number[]): Promise<void> {
  const got = Array.from((await t.toTypedArray()) as Float64Array);
  expect(got.length).toBe(expected.length);
  got.forEach((g, i) => expect(Math.abs(g - expected[i]!), `element ${i}: ${g} vs ${expected[i]}`).toBeLessThanOrEqual(1e-12));
}

describe('classifier-free guidance', () => {
  it('without rescale: u + w(c − u)', async () => {
    using u = await t64([1, 2, 3, 4]);
    using c = await t64([2, 2, 2, 6]);
    using out = await classifierFreeGuidance(u, c, { scale: 7.5 });
    // 1 + 7.5·1, 2 + 0, 3 − 7.5, 4 + 15
    await expectValues(out, [8.5, 2, -4.5, 19]);
  });

  it('rescale φ = 0.2 (stage 3) on u = 0: out = 7.5c, k = 0.2·std(c)/(7.5·std(c)) + 0.8, result = 6.2c', async () => {
    using u = await t64([0, 0, 0, 0]);
    using c = await t64([1, -1, 1, -1]);
    using out = await classifierFreeGuidance(u, c, { scale: 7.5, rescale: 0.2, rescaleEpsilon: 0 });
    // 7.5 · (0.2/7.5 + 0.8) = 0.2 + 6 = 6.2
    await expectValues(out, [6.2, -6.2, 6.2, -6.2]);
  });

  it('rescale φ = 0.5 with unbiased std: out = [3, 2, 1, 8], std(c) = 2, std(out) = √(29/3)', async () => {
    using u = await t64([1, 2, 3, 4]);
    using c = await t64([2, 2, 2, 6]);
    using out = await classifierFreeGuidance(u, c, { scale: 2, rescale: 0.5, rescaleEpsilon: 0 });
    // out = u + 2(c − u) = [3, 2, 1, 8]; mean 3.5, Σ(dev²) = 29 → var 29/3. c: mean 3, Σ(dev²) = 12 → var 4.
    const k = (0.5 * 2) / Math.sqrt(29 / 3) + 0.5; // ≈ 0.821634
    expect(k).toBeCloseTo(0.821634, 6);
    await expectValues(out, [3, 2, 1, 8].map((v) => v * k));
    expect(guidanceRescaleFactor(2, Math.sqrt(29 / 3), 0.5, 0)).toBe(k);
  });

  it('rescale is per batch element', async () => {
    using u = await t64([0, 0, 0, 0, 1, 2, 3, 4], [2, 4]);
    using c = await t64([1, -1, 1, -1, 2, 2, 2, 6], [2, 4]);
    using out = await classifierFreeGuidance(u, c, { scale: 2, rescale: 0.5, rescaleEpsilon: 0 });
    // row 0: out = 2c, k = 0.5·(1/2) + 0.5 = 0.75 → 1.5c; row 1 as in the previous case.
    const k1 = (0.5 * 2) / Math.sqrt(29 / 3) + 0.5;
    await expectValues(out, [1.5, -1.5, 1.5, -1.5, ...[3, 2, 1, 8].map((v) => v * k1)]);
    expect(out.shape).toEqual([2, 4]);
  });

  it('the default ε = 1e-12 only touches the 12th digit', async () => {
    using u = await t64([0, 0, 0, 0]);
    using c = await t64([1, -1, 1, -1]);
    using out = await classifierFreeGuidance(u, c, { scale: 7.5, rescale: 0.2 });
    await expectValues(out, [6.2, -6.2, 6.2, -6.2]);
  });

  it('batch-concatenated [uncond; cond] halves give the same result', async () => {
    using both = await t64([1, 2, 3, 4, 2, 2, 2, 6], [2, 4]);
    using out = await guidanceFromBatch(both, { scale: 2, rescale: 0.5, rescaleEpsilon: 0 });
    expect(out.shape).toEqual([1, 4]);
    const k = (0.5 * 2) / Math.sqrt(29 / 3) + 0.5;
    await expectValues(out, [3, 2, 1, 8].map((v) => v * k));
  });

  it('leaks no tensors and rejects bad arguments', async () => {
    using u = await t64([1, 2, 3, 4], [2, 2]);
    using c = await t64([2, 2, 2, 6], [2, 2]);
    using odd = await t64([1, 2, 3], [3, 1]);
    const before = Tensor.liveCount();
    const out = await classifierFreeGuidance(u, c, { scale: 3, rescale: 0.7 });
    out.dispose();
    expect(Tensor.liveCount()).toBe(before);
    await expect(classifierFreeGuidance(u, c, { scale: 3, rescale: 1.5 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    await expect(classifierFreeGuidance(u, odd, { scale: 3 })).rejects.toThrow(/same shape/);
    await expect(guidanceFromBatch(odd, { scale: 3 })).rejects.toThrow(/even batch/);
  });
});
