/**
 * DPM-Solver++ multistep (Lu et al. 2022, arXiv 2211.01095) as scalar coefficients, with the semantics of
 * diffusers 0.27 `DPMSolverMultistepScheduler` (algorithm `dpmsolver++`, solver `midpoint`, order ≤ 2).
 * Pure math; `dpm-solver.ts` applies them to tensors.
 *
 * Glossary (code → paper):
 * - `sigmas` → σ^VE_i = √((1−ᾱ)/ᾱ) at t_i (diffusers' `self.sigmas`), then 0 or σ_min at the end.
 * - `alphas`, `sigmasVp` → α_{t_i} = 1/√(σ²+1), σ_{t_i} = σ^VE·α (the VP marginal scalars).
 * - `lambda` → λ_t = log(α_t/σ_t), the half log-SNR; `h` → h_i = λ_{t_i} − λ_{t_{i−1}}.
 * - `m0`, `m1` → x_θ(x̃_{t_{i−1}}, t_{i−1}) and x_θ(x̃_{t_{i−2}}, t_{i−2}): current and previous x̂₀.
 * - `r0` → r_i = h_{i−1}/h_i; `D1` → (1/r_i)(m0 − m1).
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { DiscreteSchedule } from './betas.js';
import { predictionCoefficients } from './prediction.js';
import { dpmSolverTimesteps } from './timesteps.js';
import type { DpmSolverConfig, PredictionType } from './types.js';

/** A DPM-Solver++ run plan. Frozen; treat the arrays as read-only. */
export interface DpmSolverPlan {
  readonly kind: 'dpm-solver';
  /** t_i, descending (e.g. 999, 979, …, 20 for 50 `linspace` steps). */
  readonly timesteps: Int32Array;
  /** σ^VE at each t_i, then the final sigma (length n + 1). */
  readonly sigmas: Float64Array;
  /** VP α for each entry of `sigmas`. */
  readonly alphas: Float64Array;
  /** VP σ for each entry of `sigmas`. */
  readonly sigmasVp: Float64Array;
  /** Solver order used at each step (1 or 2): first step, and `lower_order_final` rules. */
  readonly orders: Uint8Array;
  readonly predictionType: PredictionType;
}

/** Training timesteps left after `lambda_min_clipped` (diffusers: N − searchsorted(flip(λ), λ_min)). */
function lastUsableTimestep(alphasCumprod: Float64Array, lambdaMinClipped: number): number {
  const N = alphasCumprod.length;
  let below = 0;
  for (let t = 0; t < N; t++) {
    const a = alphasCumprod[t]!;
    if (0.5 * (Math.log(a) - Math.log(1 - a)) < lambdaMinClipped) below++;
  }
  return N - below;
}

/**
 * Plan a DPM-Solver++ run (diffusers `set_timesteps`): timesteps by the config's spacing, σ^VE looked up
 * at each (integer) timestep, the final sigma (0 for `zero`, σ^VE(t=0) for `sigma_min`), and the order of
 * every step:
 * order 1 at step 0 (no history), at the last step when `euler_at_final`, or `lower_order_final` with
 * fewer than 15 steps, or `final_sigmas_type` zero; order `solverOrder` otherwise.
 *
 * @example
 * ```ts
 * const plan = createDpmSolverPlan(createDiscreteSchedule(dpmSolverConfigFromDiffusers(ddimJson)), 50);
 * plan.orders; // 1, 2, 2, …, 2, 1
 * ```
 */
export function createDpmSolverPlan(schedule: DiscreteSchedule<DpmSolverConfig>, numInferenceSteps: number): DpmSolverPlan {
  const c = schedule.config;
  const ac = schedule.alphasCumprod;
  const last = lastUsableTimestep(ac, c.lambdaMinClipped);
  const timesteps = dpmSolverTimesteps(c.numTrainTimesteps, numInferenceSteps, c.timestepSpacing, c.stepsOffset, last);
  const n = timesteps.length;
  const veAt = (t: number): number => Math.sqrt((1 - ac[t]!) / ac[t]!);
  const sigmas = new Float64Array(n + 1);
  timesteps.forEach((t, i) => {
    if (t < 0 || t >= c.numTrainTimesteps) throw new InvalidArgumentError(`Timestep ${t} is outside the training range`);
    sigmas[i] = veAt(t);
  });
  sigmas[n] = c.finalSigmasType === 'zero' ? 0 : veAt(0);
  const alphas = sigmas.map((s) => 1 / Math.sqrt(s * s + 1));
  const sigmasVp = sigmas.map((s, i) => s * alphas[i]!);
  const orders = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const lowerOrderNums = Math.min(i, c.solverOrder);
    const lowerOrderFinal =
      i === n - 1 && (c.eulerAtFinal || (c.lowerOrderFinal && n < 15) || c.finalSigmasType === 'zero');
    orders[i] = c.solverOrder === 1 || lowerOrderNums < 1 || lowerOrderFinal ? 1 : 2;
  }
  return Object.freeze({ kind: 'dpm-solver', timesteps, sigmas, alphas, sigmasVp, orders, predictionType: c.predictionType });
}

/**
 * Step i: x̂₀ = x0X·x + x0Out·out (the data prediction m0), then
 * x_{t_i} = cX·x + cM0·m0 + cM1·m1 (cM1 = 0 for first order).
 */
export interface DpmSolverCoefficients {
  readonly order: 1 | 2;
  readonly x0X: number;
  readonly x0Out: number;
  readonly cX: number;
  readonly cM0: number;
  readonly cM1: number;
}

const lambdaOf = (alpha: number, sigma: number): number => Math.log(alpha) - Math.log(sigma);

/** Coefficients of DPM-Solver++ step i (references: DPM-Solver++ paper, arXiv 2211.01095). */
export function dpmSolverCoefficients(plan: DpmSolverPlan, i: number): DpmSolverCoefficients {
  const order = plan.orders[i];
  if (order === undefined) throw new InvalidArgumentError(`Step index ${i} is outside this plan`);
  const alphaS0 = plan.alphas[i]!;
  const sigmaS0 = plan.sigmasVp[i]!;
  // 1. Data prediction x_θ(x_s, s) from the raw output (diffusers `convert_model_output`).
  const p = predictionCoefficients(plan.predictionType, alphaS0, sigmaS0);
  // 2. Final jump to σ = 0: α_t = 1, σ_t = 0, λ_t = ∞, so the first-order update (4) reduces to x_t = x̂₀.
  if (plan.sigmas[i + 1] === 0) return { order: 1, x0X: p.x0[0], x0Out: p.x0[1], cX: 0, cM0: 1, cM1: 0 };
  const alphaT = plan.alphas[i + 1]!;
  const sigmaT = plan.sigmasVp[i + 1]!;
  // 3. h_i = λ_t − λ_s, and φ = α_t·(1 − e^{−h}) = −α_t·expm1(−h).
  const h = lambdaOf(alphaT, sigmaT) - lambdaOf(alphaS0, sigmaS0);
  const phi = -alphaT * Math.expm1(-h);
  if (order === 1) {
    // 4. First-order DPM-Solver++ update (Sec. 4.1; identical to DDIM η = 0): x_t = (σ_t/σ_s)·x_s − α_t·(e^{−h} − 1)·x_θ(x_s, s).
    return { order: 1, x0X: p.x0[0], x0Out: p.x0[1], cX: sigmaT / sigmaS0, cM0: phi, cM1: 0 };
  }
  // 5. Algorithm 2 (multistep DPM-Solver++(2M)), in the midpoint form diffusers uses:
  //    r = h_{i−1}/h_i, D1 = (1/r)(m0 − m1),
  //    x_t = (σ_t/σ_s0)·x − α_t(e^{−h} − 1)·m0 − ½·α_t(e^{−h} − 1)·D1.
  const alphaS1 = plan.alphas[i - 1]!;
  const sigmaS1 = plan.sigmasVp[i - 1]!;
  const h0 = lambdaOf(alphaS0, sigmaS0) - lambdaOf(alphaS1, sigmaS1);
  const r0 = h0 / h;
  return {
    order: 2,
    x0X: p.x0[0],
    x0Out: p.x0[1],
    cX: sigmaT / sigmaS0,
    cM0: phi * (1 + 0.5 / r0),
    cM1: (-0.5 * phi) / r0,
  };
}
