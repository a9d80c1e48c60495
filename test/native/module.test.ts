// TorchScript modules through the addon: parity with Python, schema checks, errors, event loop,
// dispose during a forward, worker_threads and process exit.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { ModelLoadError, Tensor, TorchModule, cudaAvailable, disposeOutput, pendingNativeTasks } from '../../lib/index.js';
import { fixturesDir, maxAbsDiff, reference } from '../helpers/native-fixtures.js';
import { scratchDir } from '../helpers/scratch.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixture = (name: string) => join(fixturesDir, name);
const addonPath = join(root, 'build', 'Release', 'streamingt2v.node');

async function unetInputs(batch = 1) {
  const r = reference.mini_unet;
  const sample1 = await Tensor.fromArray(Float32Array.from(r.sample), r.sample_shape);
  const ctx1 = await Tensor.fromArray(Float32Array.from(r.ctx), r.ctx_shape);
  const sample = batch === 1 ? sample1 : await Tensor.cat(Array(batch).fill(sample1), 0);
  const ctx = batch === 1 ? ctx1 : await Tensor.cat(Array(batch).fill(ctx1), 0);
  const timestep = await Tensor.full([batch], r.timestep);
  if (batch !== 1) {
    sample1.dispose();
    ctx1.dispose();
  }
  return { sample, ctx, timestep, dispose: () => [sample, ctx, timestep].forEach((t) => t.dispose()) };
}

describe('TorchModule', () => {
  it('forward equals Python (affine: exact; mini UNet: max abs diff < 1e-4)', async () => {
    using affine = await TorchModule.load(fixture('affine.pt'));
    using x = await Tensor.fromArray(Float32Array.from(reference.affine.x), [8]);
    using y = await affine.forwardTensor([x, reference.affine.scale]);
    expect(maxAbsDiff(await y.toFloat32Array(), reference.affine.y)).toBeLessThan(1e-6);

    using unet = await TorchModule.load(fixture('mini_unet.pt'));
    expect(unet.inputNames).toEqual(['sample', 'timestep', 'encoder_hidden_states']);
    const inp = await unetInputs();
    using eps = await unet.forwardTensor({ sample: inp.sample, timestep: inp.timestep, encoder_hidden_states: inp.ctx });
    expect(eps.shape).toEqual(reference.mini_unet.sample_shape);
    // Tolerance: BLAS and thread count differ from the fixture run (1 thread); fp32 sums reorder.
    expect(maxAbsDiff(await eps.toFloat32Array(), reference.mini_unet.out)).toBeLessThan(1e-4);
    inp.dispose();
  });

  it('freeze and optimize at load give the same result', async () => {
    const inp = await unetInputs();
    for (const opts of [{ freeze: true }, { optimize: true }]) {
      using m = await TorchModule.load(fixture('mini_unet.pt'), opts);
      using eps = await m.forwardTensor([inp.sample, inp.timestep, inp.ctx]);
      expect(maxAbsDiff(await eps.toFloat32Array(), reference.mini_unet.out)).toBeLessThan(1e-4);
    }
    inp.dispose();
  });

  it('returns tuples, dicts and ints; fills defaults; accepts named inputs', async () => {
    using m = await TorchModule.load(fixture('outputs.pt'));
    expect(m.schema.arguments.map((a) => [a.name, a.type, a.hasDefault])).toEqual([
      ['a', 'Tensor', false],
      ['b', 'Tensor', false],
      ['steps', 'int', true],
      ['extra', 'Optional[Tensor]', true],
    ]);
    using a = await Tensor.fromArray(Float32Array.from([1, 2]), [2]);
    using b = await Tensor.fromArray(Float32Array.from([10, 20]), [2]);
    const out = await m.forward({ a, b });
    expect(Array.isArray(out)).toBe(true);
    const [s, dict, steps] = out as [Tensor, { sum: Tensor; diff: Tensor }, number];
    expect(Array.from(await s.toFloat32Array())).toEqual([11, 22]);
    expect(Array.from(await dict.sum.toFloat32Array())).toEqual([3]);
    expect(Array.from(await dict.diff.toFloat32Array())).toEqual([-9, -18]);
    expect(steps).toBe(6);
    disposeOutput(out);
    const out2 = await m.forward([a, b, 5, a]);
    expect((out2 as [Tensor, unknown, number])[2]).toBe(10);
    expect(Array.from(await (out2 as Tensor[])[0]!.toFloat32Array())).toEqual([12, 24]);
    disposeOutput(out2);
  });

  it('wrong inputs are typed errors before anything runs', async () => {
    using m = await TorchModule.load(fixture('outputs.pt'));
    using a = await Tensor.zeros([2]);
    await expect(m.forward({ a, c: a })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    await expect(m.forward([a, 'text'])).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    await expect(m.forward([a])).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    await expect(m.forward([a, a, 1, a, a])).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    await expect(m.forward([a, a, 1.5])).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    using unet = await TorchModule.load(fixture('mini_unet.pt'));
    using bad = await Tensor.zeros([1, 3, 8, 16, 16]); // 3 channels instead of 4
    using t = await Tensor.zeros([1]);
    using ctx = await Tensor.zeros([1, 8, 64]);
    await expect(unet.forward([bad, t, ctx])).rejects.toMatchObject({ code: 'ERR_TORCH' });
    using i64 = await Tensor.zeros([1, 4, 8, 16, 16], { dtype: 'int64' });
    await expect(unet.forward([i64, t, ctx])).rejects.toMatchObject({ code: 'ERR_TORCH' });
  });

  it('bad path and corrupt or truncated files are ModelLoadError naming the file', async () => {
    const dir = scratchDir('st2v-');
    await expect(TorchModule.load(join(dir, 'missing.pt'))).rejects.toBeInstanceOf(ModelLoadError);
    const truncated = join(dir, 'truncated.pt');
    writeFileSync(truncated, readFileSync(fixture('mini_unet.pt')).subarray(0, 4000));
    await expect(TorchModule.load(truncated)).rejects.toMatchObject({ code: 'ERR_MODEL_LOAD', path: truncated });
    const garbage = join(dir, 'garbage.pt');
    writeFileSync(garbage, 'this is not a zip archive');
    const err = await TorchModule.load(garbage).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toContain(garbage);
    expect((err as Error).message).not.toContain('Exception raised from');
  });

  it('the event loop keeps ticking during a long forward', async () => {
    using unet = await TorchModule.load(fixture('mini_unet.pt'));
    const inp = await unetInputs(8);
    let ticks = 0;
    let running = true;
    const tick = () => {
      ticks++;
      if (running) setTimeout(tick, 0);
    };
    setTimeout(tick, 0);
    const started = performance.now();
    using out = await unet.forwardTensor([inp.sample, inp.timestep, inp.ctx]);
    const elapsed = performance.now() - started;
    running = false;
    expect(out.shape[0]).toBe(8);
    expect(elapsed).toBeGreaterThan(20); // the forward is long enough to observe
    expect(ticks).toBeGreaterThanOrEqual(2);
    inp.dispose();
  });

  it('disposing inputs and the module during a forward is safe; the result is intact', async () => {
    const unet = await TorchModule.load(fixture('mini_unet.pt'));
    const inp = await unetInputs();
    const pending = unet.forwardTensor([inp.sample, inp.timestep, inp.ctx]);
    inp.dispose();
    unet.dispose();
    using eps = await pending;
    expect(maxAbsDiff(await eps.toFloat32Array(), reference.mini_unet.out)).toBeLessThan(1e-4);
    await expect(unet.forward([])).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
    expect(pendingNativeTasks()).toBe(0);
  });

  it('loads and runs inside worker_threads, and a worker terminated mid-forward does not crash', () => {
    const out = execFileSync(process.execPath, [join(fixturesDir, '..', 'scripts', 'worker-terminate.mjs'), addonPath, fixture('mini_unet.pt')], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(out).toContain('msg 8,4,8,16,16');
    expect(out).toContain('terminated');
  });

  it('process exit with a forward in flight exits cleanly', () => {
    const res = spawnSync(process.execPath, [join(fixturesDir, '..', 'scripts', 'exit-in-flight.cjs'), addonPath, fixture('mini_unet.pt')], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(res.signal).toBeNull();
    expect(res.status).toBe(0);
  });
});

describe.runIf(cudaAvailable())('CUDA', () => {
  it('moves tensors, runs the module on the GPU and matches the CPU result', async () => {
    const inp = await unetInputs();
    using unet = await TorchModule.load(fixture('mini_unet.pt'), { device: 'cuda' });
    using s = await inp.sample.to({ device: 'cuda' });
    using t = await inp.timestep.to({ device: 'cuda' });
    using c = await inp.ctx.to({ device: 'cuda' });
    using eps = await unet.forwardTensor([s, t, c]);
    expect(eps.device).toBe('cuda:0');
    expect(maxAbsDiff(await eps.toFloat32Array(), reference.mini_unet.out)).toBeLessThan(1e-3);
    inp.dispose();
  });

  it('randn on cuda equals randn on cpu for the same seed', async () => {
    using a = await Tensor.randn([3, 5], 9, { device: 'cuda' });
    using b = await Tensor.randn([3, 5], 9);
    expect(Array.from(await a.toFloat32Array())).toEqual(Array.from(await b.toFloat32Array()));
  });
});

