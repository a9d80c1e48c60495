// Samplers on real tensors (CPU libtorch) against the independent Python goldens
// (models/golden/make_sampler_golden.py → test/fixtures/golden/samplers.json), plus determinism, shared noise,
// ownership, abort and reentrancy.
//
// Tolerances: float64 tensors vs float64 Python: 1e-10 relative to max(1, |value|) (same equations, different
// operation order; noise is bit-identical because both sides draw float32 torch.randn on CPU and convert).
// float32 tensors vs float64 Python: 1e-4 relative.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SharedNoiseSource, sharedNoiseSeed } from '../../lib/noise-source.js';
import {
  createDdimPlan,
  createDiscreteSchedule,
  createDpmSolverPlan,
  createLogSnrCosineInterpSchedule,
  ddimConfigFromDiffusers,
  dpmSolverConfigFromDiffusers,
  logSnrCosineInterpConfig,
  foldedFrameNoise,
  sampleDdim,
  sampleDpmpp2mSde,
  sampleDpmSolverMultistep,
  sampleEuler,
  sdeditSigmas,
  vpModelToDenoiser,
  type ModelDenoiser,
  type StepInfo,
} from '../../lib/schedulers/index.js';
import { Generator, Tensor, type DType } from '../../lib/tensor.js';

const golden = JSON.parse(readFileSync(new URL('../fixtures/golden/samplers.json', import.meta.url), 'utf8'));
interface Summary { sum: number; abs_sum: number; sq_sum: number; probe_stride: number; probe: number[]; numel: number }

async function values(t: Tensor): Promise<Float64Array> {
  const a = await t.toTypedArray();
  return a instanceof Float64Array ? a : Float64Array.from(a as Float32Array);
}
async function expectSummary(t: Tensor, ref: Summary, rel: number): Promise<void> {
  const x = await values(t);
  const near = (a: number, b: number, scale = 1): void =>
    expect(Math.abs(a - b), `${a} vs ${b}`).toBeLessThanOrEqual(rel * Math.max(scale, Math.abs(b)));
  expect(x.length).toBe(ref.numel);
  near(x.reduce((s, v) => s + v, 0), ref.sum, ref.abs_sum);
  near(x.reduce((s, v) => s + Math.abs(v), 0), ref.abs_sum);
  near(x.reduce((s, v) => s + v * v, 0), ref.sq_sum);
  ref.probe.forEach((v, k) => near(x[k * ref.probe_stride]!, v));
}

function dummy4d(): Float64Array {
  const out = new Float64Array(768);
  for (let b = 0; b < 4; b++) for (let c = 0; c < 3; c++) for (let h = 0; h < 8; h++) for (let w = 0; w < 8; w++) {
    out[((b * 3 + c) * 8 + h) * 8 + w] = (((c * 8 + h) * 8 + w) * 4 + b) / 768;
  }
  return out;
}
const sample4d = (dtype: DType = 'float64') => Tensor.fromArray(dummy4d(), [4, 3, 8, 8], { dtype });
const sample5d = (dtype: DType = 'float64') =>
  Tensor.fromArray(Float64Array.from({ length: 384 }, (_, i) => i / 384 - 0.5), [1, 4, 6, 4, 4], { dtype });
/** The dummy model x·t/(t+1), as a denoiser returning a new tensor. */
const dummyModel: ModelDenoiser = (x, t) => Tensor.combine([x], [t / (t + 1)]);

const SD = { beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012, num_train_timesteps: 1000 };
const ddimPlan = (extra: Record<string, unknown> = {}, n = 10) =>
  createDdimPlan(createDiscreteSchedule(ddimConfigFromDiffusers({ ...SD, set_alpha_to_one: false, steps_offset: 1, clip_sample: false, ...extra })), n);
const dpmPlan = (extra: Record<string, unknown> = {}, n = 10) =>
  createDpmSolverPlan(createDiscreteSchedule(dpmSolverConfigFromDiffusers({ ...SD, steps_offset: 1, ...extra })), n);
const table = createLogSnrCosineInterpSchedule(logSnrCosineInterpConfig());
const { sigmas: stage3Sigmas } = sdeditSigmas(table, { steps: 30, tMax: 599 });
const stage3Denoiser = vpModelToDenoiser(table, (xIn, t) => Tensor.combine([xIn], [t / (t + 1)]));

describe('DDIM', () => {
  it.each(['epsilon', 'v_prediction', 'sample'])('η = 0, %s, float64 matches the Python loop', async (p) => {
    using x = await sample4d();
    using out = await sampleDdim(dummyModel, x, ddimPlan({ prediction_type: p }));
    await expectSummary(out, golden.loops[`ddim_eta0_${p}`].final, 1e-10);
    expect(x.disposed).toBe(false);
  });
  it('η = 0 clip_sample and float32 (1e-4)', async () => {
    using x = await sample4d('float32');
    using out = await sampleDdim(dummyModel, x, ddimPlan({ clip_sample: true, clip_sample_range: 0.25 }));
    expect(out.dtype).toBe('float32');
    await expectSummary(out, golden.loops.ddim_eta0_clip.final, 1e-4);
  });
  it('η = 0 is deterministic: two runs are bit-identical', async () => {
    using x = await sample4d('float32');
    using a = await sampleDdim(dummyModel, x, ddimPlan());
    using b = await sampleDdim(dummyModel, x, ddimPlan());
    expect(await a.toFloat32Array()).toEqual(await b.toFloat32Array());
  });
  it('η = 1 with a seeded generator matches Python (same torch CPU noise stream)', async () => {
    using x = await sample4d();
    using gen = new Generator(33);
    const seen: number[] = [];
    using out = await sampleDdim(dummyModel, x, ddimPlan(), {
      eta: 1,
      generator: gen,
      onStep: async (s: StepInfo) => void seen.push(await s.predOriginal.sum()),
    });
    await expectSummary(out, golden.loops.ddim_eta1_seed33.final, 1e-10);
    seen.forEach((v, i) => expect(v).toBeCloseTo(golden.loops.ddim_eta1_seed33.trace[i][1], 8));
  });
  it('η = 1 with the same seed reproduces bit-for-bit; another seed does not', async () => {
    using x = await sample4d('float32');
    const run = async (seed: number): Promise<Float32Array> => {
      using gen = new Generator(seed);
      using out = await sampleDdim(dummyModel, x, ddimPlan(), { eta: 1, generator: gen });
      return out.toFloat32Array();
    };
    const [a, b, c] = [await run(7), await run(7), await run(8)];
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });
  it('foldedFrameNoise draws [B·F, C, H, W] like diffusers and unfolds it to [B, C, F, H, W]', async () => {
    using g1 = new Generator(33);
    using g2 = new Generator(33);
    using noise = await foldedFrameNoise(g1)({ index: 0, shape: [1, 2, 3, 4, 5], device: 'cpu', dtype: 'float32' });
    using direct = await g2.randn([3, 2, 4, 5]);
    expect(noise.shape).toEqual([1, 2, 3, 4, 5]);
    const [n, d] = [await noise.toFloat32Array(), await direct.toFloat32Array()];
    for (const [c, f, h, w] of [[0, 0, 0, 0], [1, 2, 3, 4], [0, 1, 2, 3], [1, 0, 3, 1]] as const) {
      expect(n[((c * 3 + f) * 4 + h) * 5 + w]).toBe(d[((f * 2 + c) * 4 + h) * 5 + w]);
    }
  });
  it('η > 0 without a noise source is rejected before any model call', async () => {
    using x = await sample4d();
    let calls = 0;
    const counting: ModelDenoiser = (y, t) => ((calls += 1), dummyModel(y, t));
    await expect(sampleDdim(counting, x, ddimPlan(), { eta: 1 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    expect(calls).toBe(0);
  });
});

describe('DPM-Solver++(2M)', () => {
  it.each([
    ['epsilon', 10], ['epsilon', 20], ['v_prediction', 10], ['v_prediction', 20],
  ] as const)('%s, %i steps, float64 matches the Python loop', async (p, n) => {
    using x = await sample4d();
    using out = await sampleDpmSolverMultistep(dummyModel, x, dpmPlan({ prediction_type: p }, n));
    await expectSummary(out, golden.loops[`dpm_${p}_${n}`].final, 1e-10);
  });
  it('sigma_min final sigma, float32 (1e-4)', async () => {
    using x = await sample4d('float32');
    using out = await sampleDpmSolverMultistep(dummyModel, x, dpmPlan({ final_sigmas_type: 'sigma_min' }, 20));
    await expectSummary(out, golden.loops.dpm_epsilon_20_sigma_min.final, 1e-4);
  });
  it('is reentrant: two concurrent runs on one plan equal a lone run', async () => {
    const plan = dpmPlan({}, 20);
    using x = await sample4d();
    using y = await Tensor.combine([x], [-2]);
    using lone = await sampleDpmSolverMultistep(dummyModel, x, plan);
    const [a, b] = await Promise.all([sampleDpmSolverMultistep(dummyModel, x, plan), sampleDpmSolverMultistep(dummyModel, y, plan)]);
    using _a = a;
    using _b = b;
    expect(await values(a)).toEqual(await values(lone));
    const bv = await values(b);
    (await values(lone)).forEach((v, i) => expect(bv[i]).toBeCloseTo(-2 * v, 12)); // the loop is linear in x here
  });
});

describe('stage 3: DPM-Solver++(2M) SDE and Euler in sigma space', () => {
  it('η = 1 with SharedNoiseSource(seed 0), start x = z·σ₀ (G12), float64 matches Python', async () => {
    using z = await sample5d();
    const source = new SharedNoiseSource({ seed: 0, shape: z.shape, dtype: 'float64' });
    const sigmasSeen: number[] = [];
    using out = await sampleDpmpp2mSde(stage3Denoiser, z, stage3Sigmas, {
      inputScale: stage3Sigmas[0]!,
      noise: source.stepNoise(),
      onStep: (s) => void sigmasSeen.push(s.sigma!),
    });
    await expectSummary(out, golden.loops.sde_eta1_stage3_seed0.final, 1e-10);
    expect(sigmasSeen).toEqual(Array.from(stage3Sigmas.subarray(0, 30)));
  });
  it('η = 0 (ODE) and Euler, float64', async () => {
    using z = await sample5d();
    using ode = await sampleDpmpp2mSde(stage3Denoiser, z, stage3Sigmas, { eta: 0, inputScale: stage3Sigmas[0]! });
    await expectSummary(ode, golden.loops.sde_eta0_stage3.final, 1e-10);
    using start = await Tensor.combine([z], [stage3Sigmas[0]!]);
    using euler = await sampleEuler(stage3Denoiser, start, stage3Sigmas);
    await expectSummary(euler, golden.loops.euler_stage3.final, 1e-10);
  });
  it('η = 1 float32 on the same source (1e-4)', async () => {
    using z = await sample5d('float32');
    const source = new SharedNoiseSource({ seed: 0, shape: z.shape });
    using out = await sampleDpmpp2mSde(stage3Denoiser, z, stage3Sigmas, { inputScale: stage3Sigmas[0]!, noise: source.stepNoise() });
    await expectSummary(out, golden.loops.sde_eta1_stage3_seed0.final, 1e-4);
  });
});

describe('SharedNoiseSource', () => {
  const shape = [1, 4, 40, 3, 5];
  it('gives identical noise on the overlapping frames of two chunks (24/8 windows)', async () => {
    const source = new SharedNoiseSource({ seed: 0, shape });
    using a = await source.stepNoiseFor(3, 0, 24);
    using b = await source.stepNoiseFor(3, 16, 24);
    using aOverlap = await a.narrow(2, 16, 8);
    using bOverlap = await b.narrow(2, 0, 8);
    expect(await aOverlap.toFloat32Array()).toEqual(await bOverlap.toFloat32Array());
    using full = await source.stepNoiseFor(3);
    using fullWindow = await full.narrow(2, 16, 24);
    expect(await fullWindow.toFloat32Array()).toEqual(await b.toFloat32Array());
    using other = await source.stepNoiseFor(4, 16, 8);
    expect(await other.toFloat32Array()).not.toEqual(await bOverlap.toFloat32Array());
  });
  it('matches the Python seed derivation and torch CPU noise', async () => {
    for (const [key, seed] of Object.entries(golden.shared_noise.seeds as Record<string, string>)) {
      const [s, stream, frame] = key.split(':').map(Number) as [number, number, number];
      expect(sharedNoiseSeed(s, stream, frame)).toBe(BigInt(seed));
    }
    const source = new SharedNoiseSource({ seed: 0, shape: [1, 4, 6, 4, 4], dtype: 'float64' });
    using n = await source.stepNoiseFor(0);
    expect(await n.sum()).toBeCloseTo(golden.shared_noise.sum_seed0_stream1_frames6, 10);
    expect(Array.from((await values(n)).subarray(0, 8))).toEqual(golden.shared_noise.first_values_seed0_stream1);
  });
  it('the step hook refuses a sample of another shape', async () => {
    const source = new SharedNoiseSource({ seed: 0, shape });
    await expect(source.stepNoise()({ index: 0, shape: [1, 4, 24, 3, 5], device: 'cpu', dtype: 'float32' })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARG',
    });
  });
});

describe('ownership, callbacks and abort', () => {
  it('disposes every intermediate, never the input, and reports each step', async () => {
    using x = await sample4d('float32');
    const before = Tensor.liveCount();
    const infos: { index: number; total: number; timestep: number | undefined; sum: number }[] = [];
    const out = await sampleDpmSolverMultistep(dummyModel, x, dpmPlan(), {
      onStep: async (s) => void infos.push({ index: s.index, total: s.total, timestep: s.timestep, sum: await s.x.sum() }),
    });
    expect(Tensor.liveCount()).toBe(before + 1);
    out.dispose();
    expect(Tensor.liveCount()).toBe(before);
    expect(x.disposed).toBe(false);
    expect(infos.map((i) => [i.index, i.total, i.timestep])).toEqual(
      golden.loops.dpm_epsilon_10.timesteps.map((t: number, i: number) => [i, 10, t]),
    );
    infos.forEach((info, i) => expect(info.sum).toBeCloseTo(golden.loops.dpm_epsilon_10.trace[i][0], 3));
  });
  it('an abort between steps rejects with signal.reason and leaks nothing', async () => {
    using x = await sample4d('float32');
    const before = Tensor.liveCount();
    const controller = new AbortController();
    const reason = new Error('stop here');
    let calls = 0;
    const run = sampleDdim(async (y, t) => ((calls += 1), dummyModel(y, t)), x, ddimPlan({}, 50), {
      signal: controller.signal,
      onStep: (s) => (s.index === 2 ? controller.abort(reason) : undefined),
    });
    await expect(run).rejects.toBe(reason);
    expect(calls).toBe(3);
    expect(Tensor.liveCount()).toBe(before);
  });
  it('a throwing denoiser leaks nothing (SDE with history and noise)', async () => {
    using z = await sample5d('float32');
    const before = Tensor.liveCount();
    const source = new SharedNoiseSource({ seed: 0, shape: z.shape });
    let calls = 0;
    const failing = async (y: Tensor, s: number): Promise<Tensor> => {
      if (++calls === 4) throw new Error('model failed');
      return stage3Denoiser(y, s);
    };
    await expect(sampleDpmpp2mSde(failing, z, stage3Sigmas, { inputScale: 2, noise: source.stepNoise() })).rejects.toThrow('model failed');
    expect(Tensor.liveCount()).toBe(before);
  });
  it('rejects a denoiser that changes the shape', async () => {
    using x = await sample4d('float32');
    const bad: ModelDenoiser = (y) => y.narrow(0, 0, 1);
    await expect(sampleDdim(bad, x, ddimPlan())).rejects.toThrow(/shape \[4, 3, 8, 8\]/);
  });
});
