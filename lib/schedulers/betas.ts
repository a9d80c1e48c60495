/**
 * Discrete VP noise schedules: β_t, ᾱ_t = Π_{s≤t}(1 − β_s), and the derived VP/VE scalars.
 * Pure Float64 math (diffusers computes these in float32; the difference is ~1e-7 relative).
 *
 * Glossary: β_t `betas[t]`; ᾱ_t `alphasCumprod[t]`; α_t = √ᾱ_t and σ_t = √(1−ᾱ_t) (VP);
 * σ^VE_t = σ_t/α_t (k-diffusion sigma); λ_t = log(α_t/σ_t) (half log-SNR, DPM-Solver).
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { NoiseScheduleConfig } from './types.js';

/** torch `linspace(start, end, steps)` in float64 (torch fills the second half from the end). */
export function torchLinspace(start: number, end: number, steps: number): Float64Array {
  const out = new Float64Array(steps);
  if (steps === 1) out[0] = start;
  if (steps <= 1) return out;
  const step = (end - start) / (steps - 1);
  const half = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) out[i] = i < half ? start + step * i : end - step * (steps - i - 1);
  return out;
}

/**
 * β_i = min(1 − ᾱ((i+1)/N)/ᾱ(i/N), maxBeta) with ᾱ(u) = cos²((u + 0.008)/1.008 · π/2)
 * (Nichol & Dhariwal 2021, eq. 17; diffusers `betas_for_alpha_bar`, `squaredcos_cap_v2`).
 */
export function cosineBetas(numTrainTimesteps: number, maxBeta = 0.999): Float64Array {
  const alphaBar = (u: number): number => Math.cos(((u + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const betas = new Float64Array(numTrainTimesteps);
  for (let i = 0; i < numTrainTimesteps; i++) {
    const u1 = i / numTrainTimesteps;
    const u2 = (i + 1) / numTrainTimesteps;
    betas[i] = Math.min(1 - alphaBar(u2) / alphaBar(u1), maxBeta);
  }
  return betas;
}

/**
 * β for a config:
 * - `linear`: linspace(β_start, β_end, N).
 * - `scaled_linear`: linspace(√β_start, √β_end, N)² (latent diffusion; ModelScope T2V uses 0.00085..0.012).
 * - `squaredcos_cap_v2`: {@link cosineBetas}.
 * `trainedBetas`, when given, wins.
 */
export function betasFor(config: NoiseScheduleConfig): Float64Array {
  const N = config.numTrainTimesteps;
  if (config.trainedBetas !== undefined) {
    if (config.trainedBetas.length !== N) {
      throw new InvalidArgumentError(`Expected ${N} \`trainedBetas\` but received ${config.trainedBetas.length}`);
    }
    return Float64Array.from(config.trainedBetas);
  }
  switch (config.betaSchedule) {
    case 'linear':
      return torchLinspace(config.betaStart, config.betaEnd, N);
    case 'scaled_linear':
      return torchLinspace(Math.sqrt(config.betaStart), Math.sqrt(config.betaEnd), N).map((b) => b * b);
    case 'squaredcos_cap_v2':
      return cosineBetas(N);
    default:
      throw new InvalidArgumentError(`Unknown beta schedule ${String(config.betaSchedule)}`);
  }
}

/** ᾱ_t = Π_{s=0..t} (1 − β_s), accumulated left to right (torch `cumprod`). */
export function alphasCumprodFrom(betas: Float64Array): Float64Array {
  const out = new Float64Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc *= 1 - betas[i]!;
    out[i] = acc;
  }
  return out;
}

/**
 * A discrete VP schedule built from a frozen config. The object is frozen; treat the arrays as read-only.
 */
export interface DiscreteSchedule<C extends NoiseScheduleConfig = NoiseScheduleConfig> {
  readonly config: C;
  /** β_t, t = 0..N−1. */
  readonly betas: Float64Array;
  /** ᾱ_t, t = 0..N−1. */
  readonly alphasCumprod: Float64Array;
}

/**
 * Build β and ᾱ for a config (usually one from {@link ddimConfigFromDiffusers} or
 * {@link dpmSolverConfigFromDiffusers}).
 *
 * @example
 * ```ts
 * const s = createDiscreteSchedule(ddimConfigFromDiffusers(manifest.scheduler));
 * s.alphasCumprod[999]; // ≈ 0.0047 for scaled_linear 0.00085..0.012
 * ```
 */
export function createDiscreteSchedule<C extends NoiseScheduleConfig>(config: C): DiscreteSchedule<C> {
  const betas = betasFor(config);
  for (const b of betas) {
    if (!(b > 0 && b < 1)) throw new InvalidArgumentError(`Expected every beta in (0, 1) but received ${b}`);
  }
  return Object.freeze({ config, betas, alphasCumprod: alphasCumprodFrom(betas) });
}

/** VP scalars at ᾱ: α = √ᾱ, σ = √(1−ᾱ), σ^VE = σ/α, λ = log α − log σ. */
export function vpScalars(alphaCumprod: number): { alpha: number; sigma: number; sigmaVe: number; lambda: number } {
  const alpha = Math.sqrt(alphaCumprod);
  const sigma = Math.sqrt(1 - alphaCumprod);
  return { alpha, sigma, sigmaVe: sigma / alpha, lambda: Math.log(alpha) - Math.log(sigma) };
}
