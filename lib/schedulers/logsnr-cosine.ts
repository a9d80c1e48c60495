/**
 * The MS-Vid2Vid-XL noise schedule used by stage 3 (spec §1.9): `logsnr_cosine_interp` with zero-terminal-SNR
 * rescaling, its σ ↔ t log-linear interpolation, and the SDEdit sigma list for the DPM++ 2M SDE solver.
 * Pure Float64 math (modelscope builds the table in float32; differences are ~1e-7 relative).
 *
 * Glossary: u ∈ [1, 0] table coordinate; λ log-SNR = log(α²/σ²); σ = σ^VP_t = √sigmoid(−λ), α_t = √(1−σ²);
 * σ^VE = σ/α (the solver's sigma); t may be fractional between table entries.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import { npLinspace, roundHalfEven, torchArange } from './timesteps.js';
import type { LogSnrCosineInterpConfig } from './types.js';

/** The VP table of a log-SNR schedule. Frozen; treat the arrays as read-only. */
export interface LogSnrTable {
  readonly config: LogSnrCosineInterpConfig;
  /** σ_t (VP), t = 0..n−1; σ_{n−1} = 1 with zero terminal SNR. */
  readonly sigmas: Float64Array;
  /** α_t = √(1 − σ_t²). */
  readonly alphas: Float64Array;
  /** log σ^VE_t = log(σ_t/α_t); +∞ where α_t = 0. */
  readonly logSigmasVe: Float64Array;
}

/** λ_cos(u) = −2·log tan(a + u(b − a)), a = atan(e^{−λmin/2}), b = atan(e^{−λmax/2}) (eq. L1). */
function logSnrCosine(u: Float64Array, logsnrMin: number, logsnrMax: number): Float64Array {
  const a = Math.atan(Math.exp(-0.5 * logsnrMin));
  const b = Math.atan(Math.exp(-0.5 * logsnrMax));
  return u.map((v) => -2 * Math.log(Math.tan(a + v * (b - a))));
}

/**
 * Build the stage-3 table:
 * (L1) λ_cos(u), u = linspace(1, 0, n);
 * (L2) λ_s = λ_cos + 2·log(1/s) for s = scaleMin and s = scaleMax;
 * (L3) λ = u·λ_{scaleMin} + (1 − u)·λ_{scaleMax};
 * (L4) σ = √sigmoid(−λ);
 * (L5) zero terminal SNR: σ ← σ_min + (σ − σ_min)·(1 − σ_min)/(σ_max − σ_min), so max σ = 1;
 * (L6) α = √(1 − σ²).
 *
 * @example
 * ```ts
 * const table = createLogSnrCosineInterpSchedule(logSnrCosineInterpConfig());
 * table.sigmas[599]; // ≈ 0.97236
 * table.alphas[599]; // ≈ 0.23347
 * ```
 */
export function createLogSnrCosineInterpSchedule(config: LogSnrCosineInterpConfig): LogSnrTable {
  const n = config.numTrainTimesteps;
  const u = npLinspace(1, 0, n);
  const base = logSnrCosine(u, config.logsnrMin, config.logsnrMax); // (L1)
  const shiftMin = 2 * Math.log(1 / config.scaleMin); // (L2)
  const shiftMax = 2 * Math.log(1 / config.scaleMax);
  const sigmas = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const lam = u[i]! * (base[i]! + shiftMin) + (1 - u[i]!) * (base[i]! + shiftMax); // (L3)
    sigmas[i] = Math.sqrt(1 / (1 + Math.exp(lam))); // (L4) sigmoid(−λ) = 1/(1 + e^λ)
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of sigmas) {
    lo = Math.min(lo, s);
    hi = Math.max(hi, s);
  }
  if (config.zeroTerminalSnr && hi !== 1) {
    const scale = (1 - lo) / (hi - lo); // (L5)
    for (let i = 0; i < n; i++) sigmas[i] = lo + scale * (sigmas[i]! - lo);
  }
  const alphas = sigmas.map((s) => Math.sqrt(Math.max(0, 1 - s * s))); // (L6)
  const logSigmasVe = new Float64Array(n);
  for (let i = 0; i < n; i++) logSigmasVe[i] = alphas[i]! > 0 ? Math.log(sigmas[i]! / alphas[i]!) : Infinity;
  return Object.freeze({ config, sigmas, alphas, logSigmasVe });
}

/**
 * σ^VE at a (fractional) timestep by log-linear interpolation: log σ = (1−w)·log σ_⌊t⌋ + w·log σ_⌈t⌉,
 * w = frac(t); +∞ where that is undefined (t past the last finite entry).
 */
export function tToSigmaVe(table: LogSnrTable, t: number): number {
  const n = table.logSigmasVe.length;
  if (!(t >= 0 && t <= n - 1)) throw new InvalidArgumentError(`Expected t in [0, ${n - 1}] but received ${t}`);
  const low = Math.floor(t);
  const high = Math.ceil(t);
  const w = t - low;
  const logSigma = (1 - w) * table.logSigmasVe[low]! + w * table.logSigmasVe[high]!;
  return Number.isFinite(logSigma) ? Math.exp(logSigma) : Infinity;
}

/**
 * The (fractional) timestep of a σ^VE, inverse of {@link tToSigmaVe}: find the table interval
 * [k, k+1] holding log σ (k = last entry with log σ_k ≤ log σ, at most n−2), interpolate linearly, clamp
 * w to [0, 1]. σ = ∞ maps to n−1. The stage-3 model is called at `roundHalfEven` of this.
 */
export function sigmaVeToT(table: LogSnrTable, sigma: number): number {
  const logs = table.logSigmasVe;
  const n = logs.length;
  if (sigma === Infinity) return n - 1;
  if (!(sigma > 0)) throw new InvalidArgumentError(`Expected a positive sigma but received ${sigma}`);
  const logSigma = Math.log(sigma);
  let low = 0;
  for (let k = 0; k < n; k++) if (logSigma - logs[k]! >= 0) low = k;
  low = Math.min(low, n - 2);
  const lowLog = logs[low]!;
  const highLog = logs[low + 1]!;
  const w = Math.min(Math.max((lowLog - logSigma) / (lowLog - highLog), 0), 1);
  return (1 - w) * low + w * (low + 1);
}

/** Options for {@link sdeditSigmas}. */
export interface SdeditSigmaOptions {
  /** Number of solver steps. Stage 3: 30. */
  readonly steps: number;
  /** First (noisiest) timestep. Default n−1. Stage 3: 599 (SDEdit noise level 600). */
  readonly tMax?: number | undefined;
  /** Last timestep. Default 0. */
  readonly tMin?: number | undefined;
  /** `leading` | `linspace` | `trailing`. Default `trailing` (stage 3). */
  readonly discretization?: 'leading' | 'linspace' | 'trailing' | undefined;
  /**
   * Take one more timestep and drop the penultimate sigma, so the last step jumps from the third-to-last
   * sigma straight to 0. Default true (modelscope does this for `dpmpp_2m_sde`).
   */
  readonly discardPenultimateStep?: boolean | undefined;
}

/** Timesteps and solver sigmas of a stage-3 run. `sigmas` ends with 0; `timesteps[i]` belongs to `sigmas[i]`. */
export interface SdeditSigmas {
  readonly timesteps: Float64Array;
  /** σ^VE_0 > … > σ^VE_{steps−1} > 0 = sigmas[steps]. */
  readonly sigmas: Float64Array;
}

/**
 * The stage-3 sigma list (spec §1.9):
 * (S1) steps' = steps + 1 if discarding the penultimate step;
 * (S2) t = arange(tMax, tMin − 1, −(tMax − tMin + 1)/steps') (`trailing`; 599, 579.6, …, 18.35 for 30 steps),
 *      or arange(tMin, tMax + 1, (tMax − tMin + 1)/steps') reversed (`leading`), or linspace(tMax, tMin, steps');
 * (S3) σ_i = tToSigmaVe(t_i), then append 0;
 * (S4) drop the penultimate sigma (and its t).
 *
 * @example
 * ```ts
 * const { sigmas } = sdeditSigmas(table, { steps: 30, tMax: 599 }); // 31 values, σ_0 ≈ 4.165, last 0
 * ```
 */
export function sdeditSigmas(table: LogSnrTable, options: SdeditSigmaOptions): SdeditSigmas {
  const n = table.sigmas.length;
  const { steps } = options;
  const tMax = options.tMax ?? n - 1;
  const tMin = options.tMin ?? 0;
  const discretization = options.discretization ?? 'trailing';
  const discard = options.discardPenultimateStep ?? true;
  if (!Number.isInteger(steps) || steps < 1) throw new InvalidArgumentError(`Expected a positive integer \`steps\` but received ${steps}`);
  if (!(tMax > 0 && tMax <= n - 1)) throw new InvalidArgumentError(`Expected \`tMax\` in (0, ${n - 1}] but received ${tMax}`);
  if (!(tMin >= 0 && tMin < tMax)) throw new InvalidArgumentError(`Expected \`tMin\` in [0, tMax) but received ${tMin}`);
  const count = steps + (discard ? 1 : 0); // (S1)
  let t: Float64Array; // (S2)
  if (discretization === 'trailing') t = torchArange(tMax, tMin - 1, -((tMax - tMin + 1) / count));
  else if (discretization === 'leading') t = torchArange(tMin, tMax + 1, (tMax - tMin + 1) / count).reverse();
  else if (discretization === 'linspace') t = npLinspace(tMax, tMin, count);
  else throw new InvalidArgumentError(`Unknown discretization ${String(discretization)}`);
  t = t.map((v) => Math.min(Math.max(v, tMin), tMax));
  const sigmas = new Float64Array(t.length + 1); // (S3)
  t.forEach((v, i) => (sigmas[i] = tToSigmaVe(table, v)));
  if (!discard || sigmas.length < 3) return Object.freeze({ timesteps: t, sigmas });
  const last = sigmas.length - 1; // (S4)
  const kept = new Float64Array(last);
  kept.set(sigmas.subarray(0, last - 1));
  kept[last - 1] = 0;
  return Object.freeze({ timesteps: t.slice(0, t.length - 1), sigmas: kept });
}

/**
 * The stage-3 model wrapper's scalars at a solver sigma (spec §1.9): c_in = 1/√(σ²+1),
 * t = round(sigmaVeToT(σ)) (half to even), and the VP α_t, σ_t at that integer t.
 */
export function vpScalingsAt(
  table: LogSnrTable,
  sigmaVe: number,
): { cIn: number; timestep: number; alpha: number; sigma: number } {
  const timestep = roundHalfEven(sigmaVeToT(table, sigmaVe));
  return {
    cIn: 1 / Math.sqrt(sigmaVe * sigmaVe + 1),
    timestep,
    alpha: table.alphas[timestep]!,
    sigma: table.sigmas[timestep]!,
  };
}
