// Pure schedule math against the spec's numbers and the independent Python goldens
// (models/golden/make_sampler_golden.py → test/fixtures/golden/samplers.json). Never imports the addon.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createDiscreteSchedule } from '../../lib/schedulers/betas.js';
import { ddimConfigFromDiffusers, dpmSolverConfigFromDiffusers, logSnrCosineInterpConfig } from '../../lib/schedulers/config.js';
import {
  createLogSnrCosineInterpSchedule,
  sdeditSigmas,
  sigmaVeToT,
  tToSigmaVe,
  vpScalingsAt,
} from '../../lib/schedulers/logsnr-cosine.js';
import { ddimTimesteps, dpmSolverTimesteps, npArange, npLinspace, roundHalfEven } from '../../lib/schedulers/timesteps.js';

const golden = JSON.parse(readFileSync(new URL('../fixtures/golden/samplers.json', import.meta.url), 'utf8'));

// Tolerance for float64 TS vs float64 Python on the same formulas: 1e-12 relative.
const REL = 1e-12;
const close = (a: number, b: number, rel = REL): void => {
  expect(Math.abs(a - b)).toBeLessThanOrEqual(rel * Math.max(1, Math.abs(b)));
};

const MS_T2V = {
  _class_name: 'DDIMScheduler', _diffusers_version: '0.15.0.dev0', beta_end: 0.012, beta_schedule: 'scaled_linear',
  beta_start: 0.00085, clip_sample: false, num_train_timesteps: 1000, prediction_type: 'epsilon',
  set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1, trained_betas: null,
};

describe('numpy-exact helpers', () => {
  it('rounds half to even like numpy', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 499.5, 2.4999, 2.5001].map(roundHalfEven)).toEqual([0, 2, 2, 0, -2, 500, 2, 3]);
  });
  it('linspace pins the endpoint and uses k·step + start', () => {
    const v = npLinspace(0, 999, 51);
    expect(v[0]).toBe(0);
    expect(v[50]).toBe(999);
    expect(v[25]).toBe(25 * (999 / 50));
  });
  it('arange uses the first difference and ceil length', () => {
    expect(Array.from(npArange(1000, 0, -250))).toEqual([1000, 750, 500, 250]);
    expect(npArange(599, -1, -600 / 31).length).toBe(31);
  });
});

describe('timesteps', () => {
  it('DDIM leading, offset 1, 50 of 1000 steps: 981, 961, …, 21, 1 (spec §1.6, G14)', () => {
    const t = Array.from(ddimTimesteps(1000, 50, 'leading', 1));
    expect(t).toEqual(Array.from({ length: 50 }, (_, k) => 981 - 20 * k));
    expect(t).toEqual(golden.timesteps.ddim_leading_50_offset1);
  });
  it('DPM-Solver linspace, 50 steps: 999, 979, …, 20 (spec §1.4)', () => {
    const t = Array.from(dpmSolverTimesteps(1000, 50, 'linspace'));
    expect(t).toEqual(golden.timesteps.dpm_linspace_50);
    expect(t.slice(0, 3)).toEqual([999, 979, 959]);
    expect(t.slice(24, 26)).toEqual([519, 500]); // 499.5 rounds to even
    expect(t.at(-1)).toBe(20);
  });
  it.each([
    ['ddim_linspace_25', () => ddimTimesteps(1000, 25, 'linspace')],
    ['ddim_trailing_30', () => ddimTimesteps(1000, 30, 'trailing')],
    ['ddim_leading_7_offset0', () => ddimTimesteps(1000, 7, 'leading', 0)],
    ['dpm_linspace_9', () => dpmSolverTimesteps(1000, 9, 'linspace')],
    ['dpm_leading_20_offset1', () => dpmSolverTimesteps(1000, 20, 'leading', 1)],
    ['dpm_trailing_25', () => dpmSolverTimesteps(1000, 25, 'trailing')],
  ] as const)('%s matches numpy exactly', (name, make) => {
    expect(Array.from(make())).toEqual(golden.timesteps[name]);
  });
  it('rejects step counts outside [1, N]', () => {
    expect(() => ddimTimesteps(1000, 0, 'leading')).toThrow(/numInferenceSteps/);
    expect(() => ddimTimesteps(1000, 1001, 'leading')).toThrow(/numInferenceSteps/);
  });
});

describe('discrete VP schedules', () => {
  const idx: number[] = golden.alphas_cumprod.index;
  it.each([
    ['linear', 0.0001, 0.02],
    ['scaled_linear', 0.00085, 0.012],
    ['squaredcos_cap_v2', 0.0001, 0.02],
  ] as const)('%s ᾱ_t matches the Python reference', (name, start, end) => {
    const s = createDiscreteSchedule(ddimConfigFromDiffusers({ beta_schedule: name, beta_start: start, beta_end: end }));
    idx.forEach((t, k) => close(s.alphasCumprod[t]!, golden.alphas_cumprod[name][k]));
  });
  it('scaled_linear β_0 = 0.00085 and β_999 = 0.012', () => {
    const s = createDiscreteSchedule(ddimConfigFromDiffusers(MS_T2V));
    close(s.betas[0]!, 0.00085);
    close(s.betas[999]!, 0.012);
    expect(Object.isFrozen(s)).toBe(true);
  });
});

describe('configs from the manifest', () => {
  it('reads the ModelScope DDIM config with diffusers defaults and freezes it', () => {
    const c = ddimConfigFromDiffusers(MS_T2V);
    expect(c).toMatchObject({ timestepSpacing: 'leading', stepsOffset: 1, setAlphaToOne: false, clipSample: false });
    expect(Object.isFrozen(c)).toBe(true);
  });
  it('DPM-Solver from the DDIM config keeps linspace, order 2, lower_order_final, final sigma zero', () => {
    const c = dpmSolverConfigFromDiffusers(MS_T2V);
    expect(c).toMatchObject({
      timestepSpacing: 'linspace', solverOrder: 2, lowerOrderFinal: true, finalSigmasType: 'zero', lambdaMinClipped: -Infinity,
    });
  });
  it('rejects unsupported features and unknown keys with plain messages', () => {
    expect(() => ddimConfigFromDiffusers({ thresholding: true })).toThrow(/thresholding/);
    expect(() => dpmSolverConfigFromDiffusers({ algorithm_type: 'sde-dpmsolver++' })).toThrow(/algorithm_type/);
    expect(() => dpmSolverConfigFromDiffusers({ solver_order: 3 })).toThrow(/solver_order/);
    expect(() => ddimConfigFromDiffusers({ beta_schedul: 'linear' })).toThrow(/Unknown DDIM scheduler config key/);
    expect(() => ddimConfigFromDiffusers({ prediction_type: 'x0' })).toThrow(/prediction_type/);
  });
  it('reads modelscope names for the stage-3 schedule', () => {
    const c = logSnrCosineInterpConfig({ scale_min: 2, scale_max: 4, zero_terminal_snr: true, prediction_type: 'v' });
    expect(c).toMatchObject({ numTrainTimesteps: 1000, scaleMin: 2, scaleMax: 4, predictionType: 'v_prediction' });
  });
});

describe('stage-3 logsnr_cosine_interp table (spec §1.9)', () => {
  const table = createLogSnrCosineInterpSchedule(logSnrCosineInterpConfig());
  it('hits the spec numbers', () => {
    expect(table.sigmas[599]).toBeCloseTo(0.97236, 5);
    expect(table.alphas[599]).toBeCloseTo(0.23347, 5);
    expect(tToSigmaVe(table, 599)).toBeCloseTo(4.165, 3);
    expect(tToSigmaVe(table, 300)).toBeCloseTo(1.257, 3);
    expect(tToSigmaVe(table, 0)).toBeCloseTo(0.0011, 4);
    expect(table.sigmas[999]).toBe(1); // zero terminal SNR
    expect(tToSigmaVe(table, 999)).toBe(Infinity);
  });
  it('matches the Python table, σ(t) and t(σ)', () => {
    const L = golden.logsnr;
    (L.index as number[]).forEach((t, k) => {
      close(table.sigmas[t]!, L.sigmas_vp[k]);
      close(table.alphas[t]!, L.alphas[k]);
    });
    for (const [t, s] of Object.entries(L.sigma_ve_at)) close(tToSigmaVe(table, Number(t)), s as number);
    for (const [s, t] of Object.entries(L.t_at_sigma)) close(sigmaVeToT(table, Number(s)), t as number);
  });
  it('t → σ → t round-trips inside the table', () => {
    for (const t of [0, 1, 17.25, 300, 598.5, 998]) close(sigmaVeToT(table, tToSigmaVe(table, t)), t, 1e-9);
  });
  it('SDEdit trailing sigmas: 31 values from t = 599, penultimate (t ≈ 18.35) dropped, ends in 0', () => {
    const { timesteps, sigmas } = sdeditSigmas(table, { steps: 30, tMax: 599 });
    const ref = golden.logsnr.sdedit_30_from_599;
    expect(sigmas.length).toBe(31);
    expect(timesteps.length).toBe(30);
    expect(sigmas[30]).toBe(0);
    close(timesteps[29]!, 37.70967741935488, 1e-9);
    (ref.sigmas as number[]).forEach((s, i) => close(sigmas[i]!, s));
    (ref.timesteps as number[]).forEach((t, i) => close(timesteps[i]!, t));
  });
  it('the wrapper calls the model at t = round(σ→t) with c_in = 1/√(σ²+1)', () => {
    const { sigmas } = sdeditSigmas(table, { steps: 30, tMax: 599 });
    const used = Array.from(sigmas.subarray(0, 30), (s) => vpScalingsAt(table, s).timestep);
    expect(used).toEqual(golden.loops.sde_eta1_stage3_seed0.model_timesteps);
    const s0 = vpScalingsAt(table, sigmas[0]!);
    close(s0.cIn, 1 / Math.sqrt(sigmas[0]! ** 2 + 1));
    expect(s0.timestep).toBe(599);
    close(s0.alpha, table.alphas[599]!);
  });
});
