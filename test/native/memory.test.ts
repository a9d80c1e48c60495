// Conditioning memories on real tensors (lib/pipeline/memory.ts): CAM short-term frames (spec §1.5, G4) and
// APM long-term anchor tokens (spec §3, G5). Native tensor counts prove that evictions and dispose free memory.
import { describe, expect, it } from 'vitest';
import { DisposedError, InvalidArgumentError } from '../../lib/errors.js';
import {
  LongTermMemory,
  ShortTermMemory,
  restoreTensor,
  serializeTensor,
  type ImageEncoder,
} from '../../lib/pipeline/memory.js';
import { Tensor } from '../../lib/tensor.js';

const H = 4;
const W = 5;

/** A video [1, 3, F, H, W] whose frame j holds (tag + j)/100 − 1 + c/1000 (inside [-1, 1]). */
function video(frames: number, tag = 0): Promise<Tensor> {
  const data = new Float32Array(3 * frames * H * W);
  for (let c = 0; c < 3; c++) for (let j = 0; j < frames; j++) {
    data.fill((tag + j) / 100 - 1 + c / 1000, (c * frames + j) * H * W, (c * frames + j + 1) * H * W);
  }
  return Tensor.fromArray(data, [1, 3, frames, H, W]);
}

/** The per-(channel, frame) constant of a [1, 3, F, H, W] array. */
function frameLevels(data: Float32Array, frames: number): number[][] {
  return [0, 1, 2].map((c) => Array.from({ length: frames }, (_, j) => data[(c * frames + j) * H * W]!));
}

describe('ShortTermMemory (CAM, F_cond = 8)', () => {
  it('keeps frames 8..15 of each window as a copy and frees the evicted frames', async () => {
    const before = Tensor.liveCount();
    const stm = new ShortTermMemory();
    expect(stm.ready).toBe(false);
    expect(() => stm.frames).toThrow(InvalidArgumentError);
    const w1 = await video(16, 0);
    await stm.update(w1);
    expect(Tensor.liveCount()).toBe(before + 2); // w1 + the kept copy
    w1.dispose(); // the memory does not pin the window
    const first = stm.frames;
    expect(first.shape).toEqual([1, 3, 8, H, W]);
    const levels = frameLevels(await first.toFloat32Array(), 8);
    expect(levels[0]).toEqual(Array.from({ length: 8 }, (_, j) => Math.fround((8 + j) / 100 - 1)));
    expect(levels[2]![3]).toBe(Math.fround(11 / 100 - 1 + 2 / 1000));

    const w2 = await video(16, 40);
    await stm.update(w2);
    w2.dispose();
    expect(first.disposed).toBe(true); // evicted
    expect(Tensor.liveCount()).toBe(before + 1); // only the new 8 frames
    expect(frameLevels(await stm.frames.toFloat32Array(), 8)[1]).toEqual(
      Array.from({ length: 8 }, (_, j) => Math.fround((48 + j) / 100 - 1 + 1 / 1000)),
    );
    stm.dispose();
    expect(Tensor.liveCount()).toBe(before);
  });

  it('serialises to Float32Array + shape and restores an equal memory (also for float16)', async () => {
    using stm = new ShortTermMemory();
    using w = await video(16, 3);
    await stm.update(w);
    const state = await stm.serialize();
    expect(state.conditioningFrames).toBe(8);
    expect(state.frames!.shape).toEqual([1, 3, 8, H, W]);
    expect(state.frames!.data).toBeInstanceOf(Float32Array);
    const copy = structuredClone(state);
    using restored = await ShortTermMemory.restore(copy);
    expect(Array.from(await restored.frames.toFloat32Array())).toEqual(Array.from(await stm.frames.toFloat32Array()));

    using half = await w.to({ dtype: 'float16' });
    using stm16 = new ShortTermMemory();
    await stm16.update(half);
    using back = await ShortTermMemory.restore(await stm16.serialize());
    expect(back.frames.dtype).toBe('float16');
    expect(Array.from(await back.frames.toFloat32Array())).toEqual(Array.from(await stm16.frames.toFloat32Array()));

    using empty = await ShortTermMemory.restore(await new ShortTermMemory().serialize());
    expect(empty.ready).toBe(false);
  });

  it('honours a custom F_cond and validates its input', async () => {
    using stm = new ShortTermMemory({ conditioningFrames: 4 });
    using w = await video(16, 0);
    await stm.update(w);
    expect(frameLevels(await stm.frames.toFloat32Array(), 4)[0]).toEqual([12, 13, 14, 15].map((j) => Math.fround(j / 100 - 1)));
    using short = await video(3, 0);
    await expect(stm.update(short)).rejects.toThrow('Expected a [B, 3, F ≥ 4, H, W] video for `windowFrames` but received [1, 3, 3, 4, 5]');
    expect(() => new ShortTermMemory({ conditioningFrames: 0 })).toThrow('Expected an integer ≥ 1 for `conditioningFrames` but received 0');
  });

  it('throws DisposedError after dispose', async () => {
    const stm = new ShortTermMemory();
    using w = await video(16);
    await stm.update(w);
    stm.dispose();
    stm.dispose(); // idempotent
    expect(stm.disposed).toBe(true);
    expect(() => stm.frames).toThrow(DisposedError);
    await expect(stm.update(w)).rejects.toBeInstanceOf(DisposedError);
    await expect(stm.serialize()).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
  });

  it('an update racing with dispose frees the new frames', async () => {
    const before = Tensor.liveCount();
    const stm = new ShortTermMemory();
    const w = await video(16);
    const pending = stm.update(w);
    stm.dispose();
    await expect(pending).rejects.toBeInstanceOf(DisposedError);
    w.dispose();
    expect(Tensor.liveCount()).toBe(before);
  });
});

/** A stand-in encoder: image [N, 3, H, W] → tokens [N, 3, H·W] (its pixels), counting calls and batch sizes. */
function fakeEncoder(): { encoder: ImageEncoder; calls: number[]; inputs: Float32Array[] } {
  const calls: number[] = [];
  const inputs: Float32Array[] = [];
  return {
    calls,
    inputs,
    encoder: async (image) => {
      calls.push(image.shape[0]!);
      inputs.push(await image.toFloat32Array());
      return image.reshape([image.shape[0]!, 3, H * W]);
    },
  };
}

describe('LongTermMemory (APM)', () => {
  it('takes frame 0 as anchor and encodes anchor + grey once, in one batch [grey; anchor]', async () => {
    using v = await video(16, 7);
    const before = Tensor.liveCount();
    const fake = fakeEncoder();
    const ltm = await LongTermMemory.fromVideo(v, fake.encoder);
    expect(fake.calls).toEqual([2]); // ONE call, batch 2B
    expect(Tensor.liveCount()).toBe(before + 3); // anchor, cond, uncond: temporaries freed
    expect(ltm.anchor.shape).toEqual([1, 3, H, W]);
    const anchor = await ltm.anchor.toFloat32Array();
    expect([anchor[0], anchor[H * W], anchor[2 * H * W]]).toEqual([0, 1, 2].map((c) => Math.fround(7 / 100 - 1 + c / 1000)));
    expect(fake.inputs[0]!.subarray(0, 3 * H * W).every((x) => x === 0)).toBe(true); // grey = zeros in [-1, 1]
    expect(ltm.condTokens.shape).toEqual([1, 3, H * W]);
    expect(Array.from(await ltm.condTokens.toFloat32Array())).toEqual(Array.from(anchor));
    expect((await ltm.uncondTokens.toFloat32Array()).every((x) => x === 0)).toBe(true);
    // the tokens are reused: reading them never calls the encoder again
    void ltm.condTokens;
    void ltm.uncondTokens;
    expect(fake.calls.length).toBe(1);
    ltm.dispose();
    expect(Tensor.liveCount()).toBe(before);
  });

  it('batchEncode: false calls the encoder once per image (anchor, then grey)', async () => {
    using anchorImage = await Tensor.full([1, 3, H, W], 0.25);
    const fake = fakeEncoder();
    using ltm = await LongTermMemory.create(anchorImage, fake.encoder, { batchEncode: false });
    expect(fake.calls).toEqual([1, 1]);
    expect(Array.from(fake.inputs[0]!.subarray(0, 3))).toEqual([0.25, 0.25, 0.25]);
    expect(fake.inputs[1]!.every((x) => x === 0)).toBe(true);
    expect(await ltm.condTokens.mean()).toBeCloseTo(0.25, 12);
    expect(await ltm.uncondTokens.maxAbs()).toBe(0);
    expect(ltm.anchor).not.toBe(anchorImage); // a copy: the caller keeps its tensor
  });

  it('serialises and restores equal tensors without calling the encoder', async () => {
    using v = await video(16, 2);
    const fake = fakeEncoder();
    using ltm = await LongTermMemory.fromVideo(v, fake.encoder);
    const state = structuredClone(await ltm.serialize());
    expect(state.anchor.shape).toEqual([1, 3, H, W]);
    using back = await LongTermMemory.restore(state);
    expect(fake.calls.length).toBe(1);
    for (const key of ['anchor', 'condTokens', 'uncondTokens'] as const) {
      expect(back[key].shape).toEqual(ltm[key].shape);
      expect(Array.from(await back[key].toFloat32Array())).toEqual(Array.from(await ltm[key].toFloat32Array()));
    }
    await expect(restoreTensor({ data: new Float32Array(3), shape: [2, 2], dtype: 'float32' })).rejects.toThrow(
      'Expected 4 values for shape [2, 2] in `saved.data` but received 3',
    );
    using t = await restoreTensor(await serializeTensor(ltm.anchor));
    expect(t.shape).toEqual([1, 3, H, W]);
  });

  it('frees everything when the encoder fails or returns the wrong batch', async () => {
    using v = await video(16);
    const before = Tensor.liveCount();
    await expect(LongTermMemory.fromVideo(v, async () => { throw new Error('encoder down'); })).rejects.toThrow('encoder down');
    expect(Tensor.liveCount()).toBe(before);
    await expect(LongTermMemory.fromVideo(v, (img) => img.narrow(0, 0, 1))).rejects.toThrow(
      'Expected 2 rows from `encoder` but received [1, 3, 4, 5]',
    );
    expect(Tensor.liveCount()).toBe(before);
    await expect(LongTermMemory.create(v, fakeEncoder().encoder)).rejects.toThrow(InvalidArgumentError); // 5-D is not an image
    expect(Tensor.liveCount()).toBe(before);
  });

  it('throws DisposedError after dispose', async () => {
    using v = await video(16);
    const ltm = await LongTermMemory.fromVideo(v, fakeEncoder().encoder);
    ltm.dispose();
    ltm.dispose();
    expect(() => ltm.anchor).toThrow(DisposedError);
    expect(() => ltm.condTokens).toThrow(DisposedError);
    expect(() => ltm.uncondTokens).toThrow(DisposedError);
    await expect(ltm.serialize()).rejects.toBeInstanceOf(DisposedError);
  });
});
