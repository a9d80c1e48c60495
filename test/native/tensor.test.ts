// Native tensor bridge: parity with Python torch, ops, dispose semantics, memory.
import { describe, expect, it } from 'vitest';

import { DisposedError, Generator, InvalidArgumentError, Tensor, TensorScope, hasErrorCode } from '../../lib/index.js';
import { maxAbsDiff, reference } from '../helpers/native-fixtures.js';

describe('randn parity with torch.randn (bit-identical)', () => {
  for (const r of reference.randn) {
    it(`seed ${r.seed} shape [${r.shape.join(',')}]`, async () => {
      using t = await Tensor.randn(r.shape, r.seed >= 2 ** 32 ? BigInt(r.seed) : r.seed);
      expect(t.shape).toEqual(r.shape);
      const got = await t.toFloat32Array();
      expect(Array.from(got)).toEqual(Array.from(Float32Array.from(r.values)));
    });
  }

  it('a Generator continues one stream like torch.Generator, and its state restores it', async () => {
    using g = new Generator(reference.stream.seed);
    const state0 = await g.getState();
    for (const expected of reference.stream.draws) {
      using t = await g.randn([2, 3, 4]);
      expect(Array.from(await t.toFloat32Array())).toEqual(Array.from(Float32Array.from(expected)));
    }
    await g.setState(state0);
    using again = await g.randn([2, 3, 4]);
    expect(Array.from(await again.toFloat32Array())).toEqual(Array.from(Float32Array.from(reference.stream.draws[0] ?? [])));
  });
});

describe('closed op set', () => {
  it('combine computes Σ c_i t_i in one call', async () => {
    using a = await Tensor.fromArray(Float32Array.from([1, 2, 3]), [3]);
    using b = await Tensor.fromArray(Float32Array.from([10, 20, 30]), [3]);
    using c = await Tensor.combine([a, b, a], [2, -0.5, 0.25]);
    expect(Array.from(await c.toFloat32Array())).toEqual([2 - 5 + 0.25, 4 - 10 + 0.5, 6 - 15 + 0.75]);
  });

  it('addcmul computes a + v·b⊙c', async () => {
    using a = await Tensor.fromArray(Float32Array.from([1, 2, 3]), [3]);
    using b = await Tensor.fromArray(Float32Array.from([2, 3, 4]), [3]);
    using c = await Tensor.fromArray(Float32Array.from([0.5, -1, 2]), [3]);
    using r = await Tensor.addcmul(a, b, c, 2);
    expect(Array.from(await r.toFloat32Array())).toEqual([3, -4, 19]);
  });

  it('cat, narrow, reshape and permute move data as torch does', async () => {
    using a = await Tensor.fromArray(Float32Array.from([0, 1, 2, 3, 4, 5]), [2, 3]);
    using b = await Tensor.fromArray(Float32Array.from([6, 7, 8]), [1, 3]);
    using c = await Tensor.cat([a, b], 0);
    expect(c.shape).toEqual([3, 3]);
    using n = await c.narrow(1, 1, 2);
    expect(Array.from(await n.toFloat32Array())).toEqual([1, 2, 4, 5, 7, 8]);
    using p = await c.permute([1, 0]);
    expect(Array.from(await p.toFloat32Array())).toEqual([0, 3, 6, 1, 4, 7, 2, 5, 8]);
    using r = await p.reshape([9]);
    expect(r.shape).toEqual([9]);
  });

  it('to(dtype), clamp, mean and unbiased std', async () => {
    const data = Float32Array.from([-2, -1, 0, 1, 2, 3.5]);
    using x = await Tensor.fromArray(data, [6]);
    using h = await x.to({ dtype: 'float16' });
    expect(h.dtype).toBe('float16');
    using i = await x.to({ dtype: 'int64' });
    expect(Array.from((await i.toTypedArray()) as BigInt64Array)).toEqual([-2n, -1n, 0n, 1n, 2n, 3n]);
    using cl = await x.clamp(-1, 1);
    expect(Array.from(await cl.toFloat32Array())).toEqual([-1, -1, 0, 1, 1, 1]);
    const mean = data.reduce((s, v) => s + v, 0) / data.length;
    const variance = data.reduce((s, v) => s + (v - mean) ** 2, 0) / (data.length - 1);
    expect(await x.mean()).toBeCloseTo(mean, 12);
    expect(await x.std()).toBeCloseTo(Math.sqrt(variance), 12);
    expect(await x.maxAbs()).toBe(3.5);
  });

  it('resize matches F.interpolate (bilinear/bicubic with and without antialias, nearest) within 1e-5', async () => {
    const r = reference.resize;
    using img = await Tensor.fromArray(Float32Array.from(r.input), r.shape);
    for (const c of r.cases) {
      using out = await img.resize(c.size, c.mode, { antialias: c.antialias });
      expect(out.shape).toEqual([1, 3, ...c.size]);
      expect(maxAbsDiff(await out.toFloat32Array(), c.out)).toBeLessThan(1e-5);
    }
  });

  it('resize folds the frames of a [B,C,F,H,W] video', async () => {
    using v = await Tensor.randn([1, 3, 4, 8, 8], 3);
    using out = await v.resize([16, 16], 'bicubic');
    expect(out.shape).toEqual([1, 3, 4, 16, 16]);
    using f2 = await v.narrow(2, 2, 1);
    using f2flat = await f2.reshape([1, 3, 8, 8]);
    using f2r = await f2flat.resize([16, 16], 'bicubic');
    using o2 = await out.narrow(2, 2, 1);
    expect(maxAbsDiff(await o2.toFloat32Array(), await f2r.toFloat32Array())).toBeLessThan(1e-6);
  });

  it('pad letterboxes the last two dimensions', async () => {
    using x = await Tensor.full([1, 1, 2, 2], 1);
    using p = await x.pad([1, 2, 0, 1], -1);
    expect(p.shape).toEqual([1, 1, 3, 5]);
    expect(Array.from(await p.toFloat32Array())).toEqual([-1, 1, 1, -1, -1, -1, 1, 1, -1, -1, -1, -1, -1, -1, -1]);
  });

  it('RGB frames: [-1,1] video -> uint8 [B,F,H,W,3] (truncating) -> video', async () => {
    // pixel values chosen to exercise truncation vs rounding: 0.999 -> 254.87 -> 254 (trunc) / 255 (round)
    const vals = [-1, -0.5, 0, 0.999, 1, 2, -3, 0.25];
    using v = await Tensor.fromArray(Float32Array.from(vals.concat(vals, vals)), [1, 3, 1, 2, 4]);
    const u8 = await v.toRgbFrames();
    expect(u8.length).toBe(24);
    const expected = vals.map((x) => Math.floor(Math.min(1, Math.max(0, x * 0.5 + 0.5)) * 255));
    expect(Array.from(u8.filter((_, i) => i % 3 === 0))).toEqual(expected);
    const rounded = await v.toRgbFrames({ round: true });
    expect(rounded[3 * 3]).toBe(255);
    using back = await Tensor.fromRgbFrames(u8, [1, 1, 2, 4, 3]);
    expect(back.shape).toEqual([1, 3, 1, 2, 4]);
    const b = await back.toFloat32Array();
    expect(b[0]).toBeCloseTo(-1, 6);
    expect(b[4]).toBeCloseTo(1, 6);
  });
});

describe('errors and dispose', () => {
  it('use after dispose is ERR_DISPOSED, dispose is idempotent', async () => {
    const t = await Tensor.randn([4], 1);
    t.dispose();
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.shape).toThrow(DisposedError);
    await expect(t.clone()).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
    await expect(Tensor.combine([t], [1])).rejects.toSatisfy((e: unknown) => hasErrorCode(e, 'ERR_DISPOSED'));
  });

  it('bad arguments are typed errors, never crashes', async () => {
    await expect(Tensor.randn([2, -1], 1)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(Tensor.fromArray(new Float32Array(5), [2, 3])).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    await expect(Tensor.full([2], 0, { device: 'tpu' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    await expect(Tensor.full([2], 0, { dtype: 'complex' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    using a = await Tensor.zeros([2, 3]);
    using b = await Tensor.zeros([4]);
    await expect(Tensor.combine([a, b], [1, 1])).rejects.toMatchObject({ code: 'ERR_TORCH' });
    await expect(a.narrow(0, 5, 2)).rejects.toMatchObject({ code: 'ERR_TORCH' });
    await expect(Tensor.combine([a], [Number.NaN])).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    await expect(Tensor.combine([{} as Tensor], [1])).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
  });

  it('a CPU allocation that cannot succeed is ERR_OUT_OF_MEMORY', async () => {
    await expect(Tensor.zeros([1 << 20, 1 << 20, 1 << 10])).rejects.toMatchObject({ code: 'ERR_OUT_OF_MEMORY' });
  });

  it('TensorScope disposes temporaries and keeps what escapes', async () => {
    const before = Tensor.liveCount();
    let kept: Tensor;
    {
      using scope = new TensorScope();
      const a = scope.track(await Tensor.randn([8], 1));
      kept = scope.keep(scope.track(await Tensor.combine([a], [2])));
      expect(Tensor.liveCount()).toBe(before + 2);
    }
    expect(Tensor.liveCount()).toBe(before + 1);
    expect(kept.disposed).toBe(false);
    kept.dispose();
    expect(Tensor.liveCount()).toBe(before);
  });

  it('10,000 create/dispose cycles keep RSS bounded', async () => {
    const cycle = async () => {
      const t = await Tensor.full([64, 1024], 1); // 256 KiB each
      t.dispose();
    };
    for (let i = 0; i < 500; i++) await cycle(); // warm-up: allocator pools settle
    const before = process.memoryUsage().rss;
    const live = Tensor.liveCount();
    for (let i = 0; i < 10_000; i++) await cycle();
    const growth = process.memoryUsage().rss - before;
    expect(Tensor.liveCount()).toBe(live);
    // 10,000 tensors of 256 KiB were made (2.5 GiB in total); growth must stay far below that.
    expect(growth).toBeLessThan(256 * 1024 * 1024);
  }, 300_000);
});
