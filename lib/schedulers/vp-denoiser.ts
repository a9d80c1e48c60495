/**
 * The stage-3 model wrapper (spec §1.9 `model_fn`): turns a VP network that takes (x_in, integer t) into
 * the sigma-space x̂₀ denoiser that DPM-Solver++(2M) SDE calls.
 *
 * At a solver sigma σ (VE): c_in = 1/√(σ²+1), t = round(σ→t), x_in = c_in·x, out = model(x_in, t), and
 * x̂₀ = α_t·x_in − σ_t·out (v), (x_in − σ_t·out)/α_t (ε) or out (x₀), with α_t, σ_t the VP table values at t.
 *
 * @module
 */
import type { Tensor } from '../tensor.js';
import { TensorScope } from '../tensor.js';
import { vpScalingsAt, type LogSnrTable } from './logsnr-cosine.js';
import { predictionCoefficients } from './prediction.js';
import { checkOutput, fuse } from './sampler-common.js';
import type { PredictionType, SigmaDenoiser } from './types.js';

/** A VP network call at an integer timestep, returning its raw output (after CFG). */
export type VpModel = (xIn: Tensor, t: number) => Promise<Tensor>;

/**
 * x̂₀ from a VP model output computed on x_in = c_in·x: one combine. Borrows both tensors.
 *
 * @example
 * ```ts
 * const s = vpScalingsAt(table, sigma);
 * const x0 = await vpOutputToPredOriginal(xIn, v, s.alpha, s.sigma, 'v_prediction');
 * ```
 */
export function vpOutputToPredOriginal(
  xIn: Tensor,
  out: Tensor,
  alpha: number,
  sigma: number,
  predictionType: PredictionType,
): Promise<Tensor> {
  const p = predictionCoefficients(predictionType, alpha, sigma);
  return fuse([xIn, out], [p.x0[0], p.x0[1]]);
}

/**
 * Wrap a VP model as a {@link SigmaDenoiser} (spec §1.9). The prediction type defaults to the table's
 * config (`v_prediction` for MS-Vid2Vid-XL). The stage-3 pipeline, which needs per-chunk x̂₀ for randomized
 * blending, can instead use {@link vpScalingsAt} + {@link vpOutputToPredOriginal} per chunk.
 *
 * @example
 * ```ts
 * const denoise = vpModelToDenoiser(table, async (xIn, t) => cfg(await unet(xIn, t, y), await unet(xIn, t, neg)));
 * ```
 */
export function vpModelToDenoiser(
  table: LogSnrTable,
  model: VpModel,
  predictionType: PredictionType = table.config.predictionType,
): SigmaDenoiser {
  return async (x: Tensor, sigma: number): Promise<Tensor> => {
    const s = vpScalingsAt(table, sigma);
    const scope = new TensorScope();
    try {
      const xIn = scope.track(await fuse([x], [s.cIn]));
      const out = scope.track(await model(xIn, s.timestep));
      checkOutput(out, xIn, 'VP model');
      return await vpOutputToPredOriginal(xIn, out, s.alpha, s.sigma, predictionType);
    } finally {
      scope.dispose();
    }
  };
}
