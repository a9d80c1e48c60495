// Full denoising loops with the pure step coefficients on Float64Array "tensors", against loops written
// independently in Python from the equations (models/golden/make_sampler_golden.py). Deterministic cases only
// (the stochastic ones need torch's generator and run in test/native/samplers.test.ts). Never imports the addon.
//
// Tolerance: float64 vs float64, same equations, different operation order: sums and probes within 1e-10
// relative to max(1, |value|); timesteps and orders exact.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createDiscreteSchedule } from '../../lib/schedulers/betas.js';
import { ddimConfigFromDiffusers, dpmSolverConfigFromDiffusers, logSnrCosineInterpConfig } from '../../lib/schedulers/config.js';
import { createDdimPlan, ddimCoefficients } from '../../lib/schedulers/ddim-math.js';
import { createDpmSolverPlan, dpmSolverCoefficients } from '../../lib/schedulers/dpm-solver-math.js';
import { createLogSnrCosineInterpSchedule, sdeditSigmas, vpScalingsAt } from '../../lib/schedulers/logsnr-cosine.js';
import { predictionCoefficients } from '../../lib/schedulers/prediction.js';
import { dpmpp2mSdeCoefficients, eulerCoefficients } from '../../lib/schedulers/sigma-math.js';
import type { PredictionType } from '../../lib/schedulers/types.js';

const golden = JSON.parse(readFileSync(new URL('../fixtures/golden/samplers.json', import.meta.url), 'utf8'));
const TOL = 1e-10;

interface Summary { sum: number; abs_sum: number; sq_sum: number; probe_stride: number; probe: number[]; numel: number }
interface Loop { final: Summary; trace: [number, number][]; timesteps?: number[] }

const sum = (a: Float64Array): number => a.reduce((s, v) => s + v, 0);
const near = (a: number, b: number): void => {
  expect(Math.abs(a - b), `${a} vs ${b}`).toBeLessThanOrEqual(TOL * Math.max(1, Math.abs(b)));
};
function expectLoop(x: Float64Array, trace: [number, number][], ref: Loop): void {
  expect(x.length).toBe(ref.final.numel);
  near(sum(x), ref.final.sum);
  near(x.reduce((s, v) => s + Math.abs(v), 0), ref.final.abs_sum);
  near(x.reduce((s, v) => s + v * v, 0), ref.final.sq_sum);
  ref.final.probe.forEach((v, k) => near(x[k * ref.final.probe_stride]!, v));
  expect(trace.length).toBe(ref.trace.length);
  trace.forEach(([a, b], i) => {
    near(a, ref.trace[i]![0]);
    near(b, ref.trace[i]![1]);
  });
}

/** diffusers' dummy_sample_deter: arange(768) laid out (C,H,W,B)/768, seen as (B=4,C=3,H=8,W=8). */
function dummy4d(): Float64Array {
  const out = new Float64Array(768);
  for (let b = 0; b < 4; b++) for (let c = 0; c < 3; c++) for (let h = 0; h < 8; h++) for (let w = 0; w < 8; w++) {
    out[((b * 3 + c) * 8 + h) * 8 + w] = (((c * 8 + h) * 8 + w) * 4 + b) / 768;
  }
  return out;
}
/** (1,4,6,4,4) latent video: arange/384 − 0.5. */
const dummy5d = (): Float64Array => Float64Array.from({ length: 384 }, (_, i) => i / 384 - 0.5);
const model = (x: Float64Array, t: number): Float64Array => x.map((v) => (v * t) / (t + 1));
const lin = (terms: readonly Float64Array[], coeffs: readonly number[]): Float64Array =>
  terms[0]!.map((_, k) => terms.reduce((s, term, i) => s + coeffs[i]! * term[k]!, 0));

const SD = { beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012, num_train_timesteps: 1000 };

describe('DDIM η = 0 golden loops (10 steps, dummy model x·t/(t+1))', () => {
  const run = (raw: Record<string, unknown>): { x: Float64Array; trace: [number, number][]; timesteps: number[] } => {
    const plan = createDdimPlan(createDiscreteSchedule(ddimConfigFromDiffusers(raw)), 10);
    let x = dummy4d();
    const trace: [number, number][] = [];
    plan.timesteps.forEach((t, i) => {
      const out = model(x, t);
      const c = ddimCoefficients(plan, i, 0);
      expect(c.noiseStd).toBe(0);
      let x0 = lin([x, out], [c.x0X, c.x0Out]);
      if (plan.clipSampleRange !== null) {
        const r = plan.clipSampleRange;
        x0 = x0.map((v) => Math.min(Math.max(v, -r), r));
        x = lin([x0, x, out], [c.prevX0, c.direction * c.epsX, c.direction * c.epsOut]);
      } else {
        x = lin([x, out], [c.prevX, c.prevOut]);
      }
      trace.push([sum(x), sum(x0)]);
    });
    return { x, trace, timesteps: Array.from(plan.timesteps) };
  };
  const base = { ...SD, set_alpha_to_one: false, steps_offset: 1, clip_sample: false };
  it.each(['epsilon', 'v_prediction', 'sample'] as const)('prediction %s', (p: PredictionType) => {
    const ref: Loop = golden.loops[`ddim_eta0_${p}`];
    const { x, trace, timesteps } = run({ ...base, prediction_type: p });
    expect(timesteps).toEqual(ref.timesteps);
    expectLoop(x, trace, ref);
  });
  it('trailing spacing with set_alpha_to_one', () => {
    const { x, trace } = run({ ...base, timestep_spacing: 'trailing', steps_offset: 0, set_alpha_to_one: true });
    expectLoop(x, trace, golden.loops.ddim_eta0_trailing_alpha1);
  });
  it('clip_sample (range 0.25) clamps x̂₀ and keeps the model ε', () => {
    const { x, trace } = run({ ...base, clip_sample: true, clip_sample_range: 0.25 });
    expectLoop(x, trace, golden.loops.ddim_eta0_clip);
  });
});

describe('DDIM coefficients', () => {
  const plan = createDdimPlan(createDiscreteSchedule(ddimConfigFromDiffusers({ ...SD, set_alpha_to_one: false, steps_offset: 1 })), 50);
  it('η = 1 gives σ_t = √((1−ᾱ_p)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_p), also on the last step (ᾱ_p = ᾱ₀)', () => {
    const i = 49;
    const a = plan.alphaProd[i]!;
    const ap = plan.alphaProdPrev[i]!;
    expect(plan.timesteps[i]).toBe(1);
    expect(ap).toBe(createDiscreteSchedule(ddimConfigFromDiffusers(SD)).alphasCumprod[0]);
    const c = ddimCoefficients(plan, i, 1);
    near(c.noiseStd, Math.sqrt((1 - ap) / (1 - a)) * Math.sqrt(1 - a / ap));
    expect(c.noiseStd).toBeGreaterThan(0);
    near(c.direction ** 2 + c.noiseStd ** 2 + ap, 1);
  });
});

describe('DPM-Solver++(2M) golden loops', () => {
  const run = (p: PredictionType, n: number, finalSigmasType = 'zero') => {
    const cfg = dpmSolverConfigFromDiffusers({ ...SD, steps_offset: 1, prediction_type: p, final_sigmas_type: finalSigmasType });
    const plan = createDpmSolverPlan(createDiscreteSchedule(cfg), n);
    let x = dummy4d();
    let m1: Float64Array | undefined;
    const trace: [number, number][] = [];
    plan.timesteps.forEach((t, i) => {
      const c = dpmSolverCoefficients(plan, i);
      const m0 = lin([x, model(x, t)], [c.x0X, c.x0Out]);
      x = c.order === 1 ? lin([x, m0], [c.cX, c.cM0]) : lin([x, m0, m1!], [c.cX, c.cM0, c.cM1]);
      m1 = m0;
      trace.push([sum(x), sum(m0)]);
    });
    return { plan, x, trace };
  };
  it.each([
    ['epsilon', 10], ['epsilon', 20], ['v_prediction', 10], ['v_prediction', 20],
  ] as const)('%s, %i steps', (p, n) => {
    const ref = golden.loops[`dpm_${p}_${n}`];
    const { plan, x, trace } = run(p, n);
    expect(Array.from(plan.timesteps)).toEqual(ref.timesteps);
    (ref.sigmas as number[]).forEach((s, i) => near(plan.sigmas[i]!, s));
    expectLoop(x, trace, ref);
  });
  it('final_sigmas_type sigma_min (last step second order at ≥ 15 steps)', () => {
    const { plan, x, trace } = run('epsilon', 20, 'sigma_min');
    expect(plan.orders[19]).toBe(2);
    expectLoop(x, trace, golden.loops.dpm_epsilon_20_sigma_min);
  });
  it('orders: first step and final jump to σ = 0 are first order (lower_order_final)', () => {
    const plan = createDpmSolverPlan(createDiscreteSchedule(dpmSolverConfigFromDiffusers(SD)), 50);
    expect(Array.from(plan.orders)).toEqual([1, ...Array<number>(48).fill(2), 1]);
    expect(plan.sigmas[50]).toBe(0);
    const last = dpmSolverCoefficients(plan, 49);
    expect([last.cX, last.cM0, last.cM1]).toEqual([0, 1, 0]);
  });
});

describe('stage-3 sigma-space golden loops (logsnr table, 30 trailing steps from t = 599)', () => {
  const table = createLogSnrCosineInterpSchedule(logSnrCosineInterpConfig());
  const { sigmas } = sdeditSigmas(table, { steps: 30, tMax: 599 });
  /** The spec §1.9 wrapper around the dummy v-model. */
  const denoise = (x: Float64Array, sigma: number): Float64Array => {
    const s = vpScalingsAt(table, sigma);
    const xIn = x.map((v) => v * s.cIn);
    const p = predictionCoefficients('v_prediction', s.alpha, s.sigma);
    return lin([xIn, model(xIn, s.timestep)], [p.x0[0], p.x0[1]]);
  };
  it('DPM-Solver++(2M) SDE with η = 0 (ODE), start x = z·σ₀ (G12)', () => {
    let x: Float64Array = dummy5d().map((v) => v * sigmas[0]!);
    let old: Float64Array | undefined;
    let hLast: number | undefined;
    const trace: [number, number][] = [];
    for (let i = 0; i < sigmas.length - 1; i++) {
      const d = denoise(x, sigmas[i]!);
      const c = dpmpp2mSdeCoefficients(sigmas[i]!, sigmas[i + 1]!, old === undefined ? undefined : hLast, { eta: 0 });
      expect(c.cNoise).toBe(0);
      x = old === undefined ? lin([x, d], [c.cX, c.cDenoised]) : lin([x, d, old], [c.cX, c.cDenoised, c.cOldDenoised]);
      old = d;
      hLast = c.h;
      trace.push([sum(x), sum(d)]);
    }
    expectLoop(x, trace, golden.loops.sde_eta0_stage3);
  });
  it('η = 1 coefficients are spec §1.9: (σ′/σ)e^{−h}, 1−e^{−2h} + ½(1−e^{−2h})h/h′, σ′√(1−e^{−2h})', () => {
    const [s, sn] = [sigmas[3]!, sigmas[4]!];
    const h = Math.log(s) - Math.log(sn);
    const hLast = Math.log(sigmas[2]!) - Math.log(s);
    const c = dpmpp2mSdeCoefficients(s, sn, hLast);
    near(c.cX, (sn / s) * Math.exp(-h));
    near(c.cDenoised, 1 - Math.exp(-2 * h) + 0.5 * (1 - Math.exp(-2 * h)) * (h / hLast));
    near(c.cOldDenoised, -0.5 * (1 - Math.exp(-2 * h)) * (h / hLast));
    near(c.cNoise, sn * Math.sqrt(1 - Math.exp(-2 * h)));
    expect(dpmpp2mSdeCoefficients(sigmas[29]!, 0, hLast)).toMatchObject({ cX: 0, cDenoised: 1, cNoise: 0 });
  });
  it('Euler', () => {
    let x: Float64Array = dummy5d().map((v) => v * sigmas[0]!);
    const trace: [number, number][] = [];
    for (let i = 0; i < sigmas.length - 1; i++) {
      const d = denoise(x, sigmas[i]!);
      const c = eulerCoefficients(sigmas[i]!, sigmas[i + 1]!);
      x = lin([x, d], [c.cX, c.cDenoised]);
      trace.push([sum(x), sum(d)]);
    }
    expectLoop(x, trace, golden.loops.euler_stage3);
  });
});

describe('prediction types', () => {
  it('ε, v and x₀ parameterisations agree on a synthetic x_t = α·x₀ + σ·ε', () => {
    const [alpha, sigma, x0, eps] = [0.6, 0.8, 0.3, -1.2];
    const xt = alpha * x0 + sigma * eps;
    const outs: Record<PredictionType, number> = { epsilon: eps, sample: x0, v_prediction: alpha * eps - sigma * x0 };
    for (const [type, out] of Object.entries(outs) as [PredictionType, number][]) {
      const p = predictionCoefficients(type, alpha, sigma);
      near(p.x0[0] * xt + p.x0[1] * out, x0);
      near(p.eps[0] * xt + p.eps[1] * out, eps);
    }
  });
});
