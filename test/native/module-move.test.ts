// NativeModule.moveTo / dtype, the castIO load option, and TF32 flags, through real libtorch on CPU
// with real TorchScript files (test/fixtures/native and the tiny model in models/tiny).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import {
  cpuMemoryStats,
  cudaAvailable,
  DisposedError,
  getNumThreads,
  InvalidArgumentError,
  OutOfMemoryError,
  pendingNativeTasks,
  setCpuMemoryLimit,
  setNumThreads,
  setTf32,
  Tensor,
  tf32Enabled,
  TorchModule,
} from '../../lib/index.js';
import { fixturesDir, maxAbsDiff, reference } from '../helpers/native-fixtures.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixture = (name: string) => join(fixturesDir, name);
const tiny = (name: string) => join(root, 'models', 'tiny', name);

// bfloat16 keeps 8 significant bits (unit roundoff 2^-8 ≈ 0.0039). Rounding every weight and
// activation of the ~1.1M-parameter tiny stage-1 UNet (|out| ≤ ~1.06) gives a max abs error of
// 0.018 here (0.015 in Python torch 1.13 on other inputs); 0.05 is ~13 units of roundoff at |out| = 1.
const BF16_TOLERANCE = 0.05;

async function miniUnetInputs(device = 'cpu') {
  const r = reference.mini_unet;
  const sample = await Tensor.fromArray(Float32Array.from(r.sample), r.sample_shape, { device });
  const ctx = await Tensor.fromArray(Float32Array.from(r.ctx), r.ctx_shape, { device });
  const timestep = await Tensor.full([1], r.timestep, { device });
  return { list: [sample, timestep, ctx], dispose: () => [sample, ctx, timestep].forEach((t) => t.dispose()) };
}

/** Inputs of models/tiny/unet_stage1.pt: sample [1,4,2,8,8], timestep [1], context [1,77,64], float32. */
async function stage1Inputs(device = 'cpu') {
  const sample = await Tensor.randn([1, 4, 2, 8, 8], 11, { device });
  const timestep = await Tensor.full([1], 500, { device });
  const ctx = await Tensor.randn([1, 77, 64], 12, { device });
  return { list: [sample, timestep, ctx], dispose: () => [sample, timestep, ctx].forEach((t) => t.dispose()) };
}

async function values(t: Tensor): Promise<Float32Array> {
  return t.toFloat32Array();
}

let threadsBefore = 1;
let liveBefore = 0;
beforeAll(() => {
  threadsBefore = getNumThreads();
  setNumThreads(1); // the CI machine is shared; one thread also makes results reproducible run to run
});
afterAll(() => setNumThreads(threadsBefore));
beforeEach(() => {
  liveBefore = Tensor.liveCount();
});
afterEach(() => {
  // Every tensor a test made (inputs, outputs, castIO temporaries) was disposed; nothing is queued.
  expect(Tensor.liveCount()).toBe(liveBefore);
  expect(pendingNativeTasks()).toBe(0);
});

describe('TorchModule.moveTo / dtype', () => {
  it('reports the dtype of the floating weights at load and after each move', async () => {
    using unet = await TorchModule.load(fixture('mini_unet.pt'));
    expect(unet.dtype).toBe('float32');
    using half = await TorchModule.load(fixture('mini_unet.pt'), { dtype: 'bfloat16' });
    expect(half.dtype).toBe('bfloat16');
    await unet.moveTo({ dtype: 'float64' });
    expect(unet.dtype).toBe('float64');
    expect(unet.device).toBe('cpu');
    await unet.moveTo({ device: 'cpu', dtype: 'float16' });
    expect(unet.dtype).toBe('float16');
    // Module without parameters or buffers: no dtype.
    using outputs = await TorchModule.load(fixture('outputs.pt'));
    expect(outputs.dtype).toBeNull();
    await outputs.moveTo({ dtype: 'bfloat16' });
    expect(outputs.dtype).toBeNull();
  });

  it('bfloat16 UNet with castIO: float32 in, float32 out, within the bf16 tolerance; round trip is lossy but close', async () => {
    const inp = await stage1Inputs();
    using unet = await TorchModule.load(tiny('unet_stage1.pt'), { castIO: true });
    using ref = await unet.forwardTensor(inp.list);
    expect(ref.dtype).toBe('float32');
    const refValues = await values(ref);

    await unet.moveTo({ dtype: 'bfloat16' });
    expect(unet.dtype).toBe('bfloat16');
    using out = await unet.forwardTensor(inp.list);
    expect(out.dtype).toBe('float32');
    expect(out.shape).toEqual(ref.shape);
    const bf16Error = maxAbsDiff(await values(out), refValues);
    expect(bf16Error).toBeGreaterThan(0); // the weights really are bfloat16 now
    expect(bf16Error).toBeLessThan(BF16_TOLERANCE);
    // The caller's float32 inputs are untouched (castIO converted copies, then disposed them).
    expect(inp.list.map((t) => t.dtype)).toEqual(['float32', 'float32', 'float32']);

    // float32 -> bfloat16 -> float32 rounds every weight to 8 significant bits: not exact.
    await unet.moveTo({ dtype: 'float32' });
    expect(unet.dtype).toBe('float32');
    using back = await unet.forwardTensor(inp.list);
    const roundTripError = maxAbsDiff(await values(back), refValues);
    expect(roundTripError).toBeGreaterThan(0);
    expect(roundTripError).toBeLessThan(BF16_TOLERANCE);
    inp.dispose();
  });

  it('without castIO a bfloat16 module returns bfloat16 and needs bfloat16 inputs', async () => {
    const inp = await stage1Inputs();
    using unet = await TorchModule.load(tiny('unet_stage1.pt'), { dtype: 'bfloat16' });
    await expect(unet.forward(inp.list)).rejects.toMatchObject({ code: 'ERR_TORCH' });
    const bf16 = await Promise.all(inp.list.map((t) => t.to({ dtype: 'bfloat16' })));
    using out = await unet.forwardTensor(bf16);
    expect(out.dtype).toBe('bfloat16');
    bf16.forEach((t) => t.dispose());
    inp.dispose();
  });

  it('float32 -> float64 -> float32 is exact', async () => {
    const inp = await miniUnetInputs();
    using unet = await TorchModule.load(fixture('mini_unet.pt'));
    using before = await unet.forwardTensor(inp.list);
    await unet.moveTo({ dtype: 'float64' });
    await unet.moveTo({ dtype: 'float32' });
    using after = await unet.forwardTensor(inp.list);
    expect(Array.from(await values(after))).toEqual(Array.from(await values(before)));
    expect(maxAbsDiff(await values(after), reference.mini_unet.out)).toBeLessThan(1e-4);
    inp.dispose();
  });

  it('a forward queued before the move runs with the old weights; forward and moveTo reject while it is pending', async () => {
    const inp = await miniUnetInputs();
    using unet = await TorchModule.load(fixture('mini_unet.pt'));
    using ref = await unet.forwardTensor(inp.list);
    const refValues = Array.from(await values(ref));

    const queued = unet.forwardTensor(inp.list); // float32 inputs: only valid with the float32 weights
    const move = unet.moveTo({ dtype: 'float64' });
    const during = await unet.forward(inp.list).catch((e: unknown) => e);
    expect(during).toBeInstanceOf(InvalidArgumentError);
    expect((during as Error).message).toMatch(/is being moved to cpu as float64; await moveTo\(\) before calling forward\(\)/);
    expect((during as Error).message).toContain('mini_unet.pt');
    await expect(unet.moveTo({ dtype: 'float32' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG', message: expect.stringContaining('already being moved') });
    expect(unet.dtype).toBe('float32'); // not yet moved

    using first = await queued; // FIFO: ran before the move, with float32 weights
    expect(Array.from(await values(first))).toEqual(refValues);
    await move;
    expect(unet.dtype).toBe('float64');
    // Now float32 inputs no longer match the weights (the module casts its timestep embedding to float32).
    await expect(unet.forward(inp.list)).rejects.toMatchObject({ code: 'ERR_TORCH' });
    await unet.moveTo({ dtype: 'float32' });
    using again = await unet.forwardTensor(inp.list);
    expect(Array.from(await values(again))).toEqual(refValues);
    inp.dispose();
  });

  it('frozen and optimized modules cannot move; their dtype is still reported', async () => {
    for (const opts of [{ freeze: true }, { optimize: true }]) {
      using m = await TorchModule.load(fixture('mini_unet.pt'), opts);
      expect(m.dtype).toBe('float32');
      const err = await m.moveTo({ dtype: 'float64' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).toContain(opts.freeze ? '`freeze`' : '`optimize`');
      expect((err as Error).message).toContain('graph constants');
      expect(m.dtype).toBe('float32');
      // Still usable.
      const inp = await miniUnetInputs();
      using out = await m.forwardTensor(inp.list);
      expect(maxAbsDiff(await values(out), reference.mini_unet.out)).toBeLessThan(1e-4);
      inp.dispose();
    }
  });

  it('a move that fails part-way (CPU memory limit) rejects with OutOfMemoryError and puts the weights back', async () => {
    const inp = await miniUnetInputs();
    using unet = await TorchModule.load(fixture('mini_unet.pt'));
    using ref = await unet.forwardTensor(inp.list);
    const refValues = Array.from(await values(ref));
    const stats = cpuMemoryStats();
    expect(stats.accounting).toBe(true);
    // Parameters in order: time.0.weight (64 KiB as float32, 128 KiB as float64), time.0.bias, time.2.weight
    // (512 KiB as float64). 200 KiB of room: the first two convert, the third fails, so the module is
    // half float64 when the failure is caught and must be converted back.
    setCpuMemoryLimit(stats.allocated + 200 * 1024);
    let err: unknown;
    try {
      err = await unet.moveTo({ dtype: 'float64' }).catch((e: unknown) => e);
    } finally {
      setCpuMemoryLimit(stats.limit === 0 ? null : stats.limit);
    }
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect((err as OutOfMemoryError).nativeCall).toBe('moveTo');
    expect([unet.device, unet.dtype]).toEqual(['cpu', 'float32']);
    using again = await unet.forwardTensor(inp.list); // not left "moving", and all float32 again
    expect(Array.from(await values(again))).toEqual(refValues);
    await unet.moveTo({ dtype: 'float64' }); // and it can move once there is memory
    expect(unet.dtype).toBe('float64');
    inp.dispose();
  });

  it('moveTo after dispose rejects with DisposedError; dispose during a move is safe', async () => {
    const m = await TorchModule.load(fixture('affine.pt'));
    m.dispose();
    await expect(m.moveTo({ dtype: 'float64' })).rejects.toBeInstanceOf(DisposedError);

    const n = await TorchModule.load(fixture('mini_unet.pt'));
    const move = n.moveTo({ dtype: 'float64' });
    n.dispose();
    await expect(move).resolves.toBeUndefined();
    await expect(n.forward([])).rejects.toBeInstanceOf(DisposedError);
  });

  it('invalid targets reject with InvalidArgumentError before anything is queued', async () => {
    using m = await TorchModule.load(fixture('affine.pt'));
    const bad: unknown[] = [
      null,
      'cpu',
      [],
      { device: 'tpu' },
      { device: 'cuda:x' },
      { device: 'cuda:' },
      { device: 0 },
      { dtype: 'int64' },
      { dtype: 'uint8' },
      { dtype: 'float8' },
    ];
    for (const target of bad) {
      const err = await m.moveTo(target as never).catch((e: unknown) => e);
      expect(err, JSON.stringify(target)).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).toMatch(/^Expected .* for `(target|device|dtype)` but received /);
    }
    expect(pendingNativeTasks()).toBe(0);
    expect(m.dtype).toBe('float32');
    // An empty target is a no-op that still works.
    await m.moveTo({});
    expect([m.device, m.dtype]).toEqual(['cpu', 'float32']);
  });

  it.skipIf(cudaAvailable())('moving onto CUDA without CUDA rejects like Tensor.to(), and the module keeps working', async () => {
    using m = await TorchModule.load(fixture('affine.pt'));
    using x = await Tensor.fromArray(Float32Array.from(reference.affine.x), [8]);
    const tensorErr = await x.to({ device: 'cuda' }).catch((e: unknown) => e);
    const moduleErr = await m.moveTo({ device: 'cuda' }).catch((e: unknown) => e);
    expect(moduleErr).toBeInstanceOf(InvalidArgumentError);
    expect((moduleErr as Error).message).toBe((tensorErr as Error).message);
    expect(m.device).toBe('cpu');
    using y = await m.forwardTensor([x, reference.affine.scale]); // not left "moving"
    expect(maxAbsDiff(await values(y), reference.affine.y)).toBeLessThan(1e-6);
  });
});

describe('castIO', () => {
  it('never casts int64 token ids (bfloat16 text encoder)', async () => {
    const ids = BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i < 8 ? 1 + ((i * 37) % 600) : 0));
    using tokens = await Tensor.fromArray(ids, [1, 77]);
    expect(tokens.dtype).toBe('int64');
    using enc = await TorchModule.load(tiny('text_encoder.pt'), { castIO: true });
    using ref = await enc.forwardTensor([tokens]);
    await enc.moveTo({ dtype: 'bfloat16' });
    using out = await enc.forwardTensor({ input_ids: tokens }); // an index tensor cast to bf16 would make embedding() throw
    expect(out.dtype).toBe('float32');
    expect(tokens.dtype).toBe('int64');
    // |hidden| ≤ ~3.6 after the final LayerNorm: bf16 gives 0.041 (measured), 2^-8 relative per rounding.
    expect(maxAbsDiff(await values(out), await values(ref))).toBeLessThan(0.15);
  });

  it('converts float64 inputs down to a float32 module (exact here) and leaves float32 outputs alone', async () => {
    using m = await TorchModule.load(fixture('affine.pt'), { castIO: true });
    using x = await Tensor.fromArray(Float64Array.from(reference.affine.x), [8]);
    using y = await m.forwardTensor([x, reference.affine.scale]);
    expect(y.dtype).toBe('float32');
    expect(x.dtype).toBe('float64');
    expect(maxAbsDiff(await values(y), reference.affine.y)).toBeLessThan(1e-6);
    // castIO off: the float64 input reaches the module and type promotion gives float64.
    using plain = await TorchModule.load(fixture('affine.pt'));
    using z = await plain.forwardTensor([x, reference.affine.scale]);
    expect(z.dtype).toBe('float64');
  });

  it('disposes its temporaries when the forward fails, and validates the option', async () => {
    using m = await TorchModule.load(tiny('unet_stage1.pt'), { castIO: true, dtype: 'bfloat16' });
    using bad = await Tensor.zeros([1, 3, 2, 8, 8]); // 3 channels instead of 4
    using t = await Tensor.full([1], 10);
    using ctx = await Tensor.zeros([1, 77, 64]);
    await expect(m.forward([bad, t, ctx])).rejects.toMatchObject({ code: 'ERR_TORCH' });
    // (afterEach checks that the three bfloat16 copies were disposed.)
    await expect(TorchModule.load(fixture('affine.pt'), { castIO: 'yes' as never })).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('castIO with keepInputDtypes (manifest fixed_dtype inputs)', () => {
  // bfloat16 keeps 8 significant bits: between 512 and 1024 it steps by 4, so a float32 timestep of 601.9
  // becomes 600 once cast. The networks convert the timestep themselves (sinusoidal features in float32),
  // so keeping it float32 must change the output, casting it must not.
  it('a kept input is passed as given; others are cast', async () => {
    using kept = await TorchModule.load(tiny('unet_stage1.pt'), { castIO: true, dtype: 'bfloat16', keepInputDtypes: ['timestep'] });
    using cast = await TorchModule.load(tiny('unet_stage1.pt'), { castIO: true, dtype: 'bfloat16' });
    using sample = await Tensor.randn([1, 4, 2, 8, 8], 11);
    using ctx = await Tensor.randn([1, 77, 64], 12);
    using t600 = await Tensor.full([1], 600);
    using t602 = await Tensor.full([1], 601.9);
    const run = async (m: TorchModule, t: Tensor, named: boolean) => {
      using out = await m.forwardTensor(named ? { sample, timestep: t, encoder_hidden_states: ctx } : [sample, t, ctx]);
      expect(out.dtype).toBe('float32');
      return values(out);
    };
    const maxAbs = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
    expect(maxAbs(await run(cast, t600, false), await run(cast, t602, false))).toBe(0);
    expect(maxAbs(await run(kept, t600, false), await run(kept, t602, false))).toBeGreaterThan(0);
    expect(maxAbs(await run(kept, t600, true), await run(kept, t602, true))).toBeGreaterThan(0);
    await expect(TorchModule.load(fixture('affine.pt'), { castIO: true, keepInputDtypes: 'timestep' as never })).rejects.toThrow(
      "Expected an array of input names for `keepInputDtypes` but received 'timestep'",
    );
  });
});

describe('TF32', () => {
  it('setTf32 round-trips and rejects non-booleans', () => {
    const initial = tf32Enabled();
    expect(typeof initial).toBe('boolean');
    try {
      setTf32(true);
      expect(tf32Enabled()).toBe(true);
      setTf32(false);
      expect(tf32Enabled()).toBe(false);
      for (const bad of [1, 'true', null, undefined]) {
        expect(() => setTf32(bad as never)).toThrow(InvalidArgumentError);
      }
      expect(tf32Enabled()).toBe(false);
    } finally {
      setTf32(initial);
    }
  });
});

describe.runIf(cudaAvailable())('CUDA', () => {
  let tf32Before = false;
  beforeAll(() => {
    tf32Before = tf32Enabled();
    setTf32(false); // strict float32 on the GPU, so CPU and GPU agree to float32 rounding
  });
  afterAll(() => setTf32(tf32Before));

  it('moves a module cpu -> cuda -> cpu; forward works on each device with the same output', async () => {
    const cpuInputs = await miniUnetInputs();
    const gpuInputs = await miniUnetInputs('cuda');
    using unet = await TorchModule.load(fixture('mini_unet.pt'));
    using onCpu = await unet.forwardTensor(cpuInputs.list);
    const cpuValues = await values(onCpu);

    await unet.moveTo({ device: 'cuda' });
    expect(unet.device).toBe('cuda:0');
    expect(unet.dtype).toBe('float32');
    using onGpu = await unet.forwardTensor(gpuInputs.list);
    expect(onGpu.device).toBe('cuda:0');
    // Different kernels (cuDNN vs oneDNN), strict float32: ~1e-6 relative.
    expect(maxAbsDiff(await values(onGpu), cpuValues)).toBeLessThan(1e-3);
    await expect(unet.forward(cpuInputs.list)).rejects.toMatchObject({ code: 'ERR_TORCH' }); // inputs on the wrong device

    await unet.moveTo({ device: 'cpu' });
    expect(unet.device).toBe('cpu');
    using back = await unet.forwardTensor(cpuInputs.list);
    expect(Array.from(await values(back))).toEqual(Array.from(cpuValues)); // the weights moved losslessly
    cpuInputs.dispose();
    gpuInputs.dispose();
  });

  it('float16 on the GPU with castIO stays close to the float32 CPU output', async () => {
    const cpuInputs = await stage1Inputs();
    const gpuInputs = await stage1Inputs('cuda');
    using unet = await TorchModule.load(tiny('unet_stage1.pt'), { castIO: true });
    using ref = await unet.forwardTensor(cpuInputs.list);
    await unet.moveTo({ device: 'cuda', dtype: 'float16' });
    expect([unet.device, unet.dtype]).toEqual(['cuda:0', 'float16']);
    using out = await unet.forwardTensor(gpuInputs.list);
    expect([out.device, out.dtype]).toEqual(['cuda:0', 'float32']);
    // float16 has 11 significant bits: tighter than bfloat16, so the bf16 bound holds.
    expect(maxAbsDiff(await values(out), await values(ref))).toBeLessThan(BF16_TOLERANCE);
    cpuInputs.dispose();
    gpuInputs.dispose();
  });
});
