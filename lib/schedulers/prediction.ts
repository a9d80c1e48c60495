/**
 * Prediction types as linear maps. With VP scalars α_t = √ᾱ_t, σ_t = √(1−ᾱ_t) and x_t = α_t·x₀ + σ_t·ε,
 * every parameterisation gives x̂₀ and ε̂ as a·x_t + b·out, so a sampler can fold the conversion into its
 * own scalar coefficients and issue one `Tensor.combine`. Pure math.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { PredictionType } from './types.js';

/** x̂₀ = x0[0]·x_t + x0[1]·out and ε̂ = eps[0]·x_t + eps[1]·out. */
export interface PredictionCoefficients {
  readonly x0: readonly [number, number];
  readonly eps: readonly [number, number];
}

/**
 * Coefficients for one prediction type at VP scalars (α_t, σ_t):
 * - (P1) `epsilon`: x̂₀ = (x_t − σ_t·ε̂)/α_t (DDIM eq. 12's "predicted x₀"), ε̂ = out.
 * - (P2) `sample`: x̂₀ = out, ε̂ = (x_t − α_t·x̂₀)/σ_t.
 * - (P3) `v_prediction`: x̂₀ = α_t·x_t − σ_t·v, ε̂ = σ_t·x_t + α_t·v (Salimans & Ho 2022, §4; uses α²+σ² = 1).
 *
 * @example
 * ```ts
 * predictionCoefficients('v_prediction', 0.6, 0.8); // { x0: [0.6, -0.8], eps: [0.8, 0.6] }
 * ```
 */
export function predictionCoefficients(type: PredictionType, alpha: number, sigma: number): PredictionCoefficients {
  switch (type) {
    case 'epsilon':
      return { x0: [1 / alpha, -sigma / alpha], eps: [0, 1] }; // (P1)
    case 'sample':
      return { x0: [0, 1], eps: [1 / sigma, -alpha / sigma] }; // (P2)
    case 'v_prediction':
      return { x0: [alpha, -sigma], eps: [sigma, alpha] }; // (P3)
    default:
      throw new InvalidArgumentError(`Unknown prediction type ${String(type)}`);
  }
}
