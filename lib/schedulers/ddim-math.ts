/**
 * DDIM (Song, Meng & Ermon 2021, arXiv 2010.02502) as scalar coefficients: the per-run plan (timesteps,
 * ᾱ_t, ᾱ_prev) and each step's coefficients. Pure math; `ddim.ts` applies them to tensors in one
 * `Tensor.combine` per update. Semantics of diffusers 0.27 `DDIMScheduler.step`.
 *
 * Glossary (code → paper):
 * - `alphaProd` → α_t (paper) = ᾱ_t (DDPM notation); `alphaProdPrev` → α_{t−1} (ᾱ_prev).
 * - `predOriginal` → x̂₀ = f_θ(x_t), "predicted x₀" of eq. 12; `eps` → ε_θ(x_t).
 * - `direction` → √(1 − α_{t−1} − σ_t²), the "direction pointing to x_t" of eq. 12.
 * - `noiseStd` → σ_t(η) of eq. 16; `noise` → ε_t ~ N(0, I), the "random noise" term of eq. 12.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { DiscreteSchedule } from './betas.js';
import { predictionCoefficients } from './prediction.js';
import { ddimTimesteps } from './timesteps.js';
import type { DdimConfig, PredictionType } from './types.js';

/** A DDIM run plan. Frozen; treat the arrays as read-only. */
export interface DdimPlan {
  readonly kind: 'ddim';
  /** t_i, descending (e.g. 981, 961, …, 1). */
  readonly timesteps: Int32Array;
  /** ᾱ at t_i. */
  readonly alphaProd: Float64Array;
  /** ᾱ at t_i − N div n (diffusers' prev_timestep), or the final ᾱ (1 or ᾱ₀) when that is negative. */
  readonly alphaProdPrev: Float64Array;
  readonly predictionType: PredictionType;
  /** Clamp range for x̂₀, or null for no clamping (`clip_sample` false). */
  readonly clipSampleRange: number | null;
}

/**
 * Plan a DDIM run of `numInferenceSteps` (diffusers `set_timesteps`).
 *
 * @example
 * ```ts
 * const plan = createDdimPlan(createDiscreteSchedule(ddimConfig), 50);
 * plan.timesteps; // 981, 961, …, 1 for `leading` + offset 1
 * ```
 */
export function createDdimPlan(schedule: DiscreteSchedule<DdimConfig>, numInferenceSteps: number): DdimPlan {
  const c = schedule.config;
  const N = c.numTrainTimesteps;
  const timesteps = ddimTimesteps(N, numInferenceSteps, c.timestepSpacing, c.stepsOffset);
  const ac = schedule.alphasCumprod;
  const finalAlphaProd = c.setAlphaToOne ? 1 : ac[0]!;
  const ratio = Math.floor(N / numInferenceSteps);
  const alphaProd = new Float64Array(timesteps.length);
  const alphaProdPrev = new Float64Array(timesteps.length);
  timesteps.forEach((t, i) => {
    if (t < 0 || t >= N) throw new InvalidArgumentError(`Timestep ${t} is outside [0, ${N}); check \`stepsOffset\``);
    alphaProd[i] = ac[t]!;
    const prev = t - ratio; // diffusers: prev_timestep = t − N // n, whatever the spacing
    alphaProdPrev[i] = prev >= 0 ? ac[prev]! : finalAlphaProd;
  });
  return Object.freeze({
    kind: 'ddim',
    timesteps,
    alphaProd,
    alphaProdPrev,
    predictionType: c.predictionType,
    clipSampleRange: c.clipSample ? c.clipSampleRange : null,
  });
}

/**
 * One step's coefficients. Without clipping:
 * x̂₀ = x0X·x_t + x0Out·out and x_{t−1} = prevX·x_t + prevOut·out + noiseStd·ε_t.
 * With clipping: x_{t−1} = prevX0·clamp(x̂₀) + direction·(epsX·x_t + epsOut·out) + noiseStd·ε_t.
 */
export interface DdimCoefficients {
  readonly x0X: number;
  readonly x0Out: number;
  readonly epsX: number;
  readonly epsOut: number;
  /** √ᾱ_prev, the weight of x̂₀ in x_{t−1}. */
  readonly prevX0: number;
  /** √(1 − ᾱ_prev − σ_t²), the weight of ε̂. */
  readonly direction: number;
  /** σ_t(η) = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1 − ᾱ_t/ᾱ_prev). 0 when η = 0. */
  readonly noiseStd: number;
  /** prevX0·x0X + direction·epsX (the no-clip fused weight of x_t). */
  readonly prevX: number;
  /** prevX0·x0Out + direction·epsOut (the no-clip fused weight of the model output). */
  readonly prevOut: number;
}

/**
 * Coefficients of DDIM step i with stochasticity η (eta = 0: deterministic DDIM; eta = 1: DDPM-like,
 * stage 2). Numbers refer to the DDIM paper.
 */
export function ddimCoefficients(plan: DdimPlan, i: number, eta: number): DdimCoefficients {
  if (!(eta >= 0)) throw new InvalidArgumentError(`Expected \`eta\` ≥ 0 but received ${eta}`);
  // 1. get ᾱ_t and ᾱ_prev (prev = t − N div n; final ᾱ when below 0).
  const a = plan.alphaProd[i];
  const ap = plan.alphaProdPrev[i];
  if (a === undefined || ap === undefined) throw new InvalidArgumentError(`Step index ${i} is outside this plan`);
  // 2. x̂₀ and ε̂ from the model output: eq. 12's "predicted x₀" f_θ(x_t) = (x_t − √(1−ᾱ_t)·ε_θ)/√ᾱ_t,
  //    or its v / sample analogues.
  const p = predictionCoefficients(plan.predictionType, Math.sqrt(a), Math.sqrt(1 - a));
  // 3. eq. 16: σ_t(η)² = η²·(1−ᾱ_prev)/(1−ᾱ_t)·(1 − ᾱ_t/ᾱ_prev).
  const variance = ((1 - ap) / (1 - a)) * (1 - a / ap);
  const noiseStd = eta * Math.sqrt(Math.max(0, variance));
  // 4. eq. 12: x_{t−1} = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev − σ_t²)·ε̂ + σ_t·ε_t
  //    ("predicted x₀" + "direction pointing to x_t" + "random noise"). Clamped at 0 against rounding.
  const prevX0 = Math.sqrt(ap);
  const direction = Math.sqrt(Math.max(0, 1 - ap - noiseStd * noiseStd));
  return {
    x0X: p.x0[0],
    x0Out: p.x0[1],
    epsX: p.eps[0],
    epsOut: p.eps[1],
    prevX0,
    direction,
    noiseStd,
    prevX: prevX0 * p.x0[0] + direction * p.eps[0],
    prevOut: prevX0 * p.x0[1] + direction * p.eps[1],
  };
}
