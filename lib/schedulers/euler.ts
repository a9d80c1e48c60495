/**
 * Euler sampler in sigma (VE) space (Karras et al. 2022, Algorithm 2 without churn; k-diffusion
 * `sample_euler`): the simplest reference solver for the probability-flow ODE dx/dσ = (x − D(x; σ))/σ.
 *
 * @module
 */
import type { Tensor } from '../tensor.js';
import { checkSigmas } from './dpmpp-2m-sde.js';
import { checkOutput, fuse, runLoop } from './sampler-common.js';
import { eulerCoefficients } from './sigma-math.js';
import type { SamplerRunOptions, SigmaDenoiser } from './types.js';

/**
 * Runs Euler over `sigmas`: D_i = denoiser(x, σ_i), d_i = (x − D_i)/σ_i, x ← x + d_i·(σ_{i+1} − σ_i), fused as
 * x ← (σ_{i+1}/σ_i)·x + (1 − σ_{i+1}/σ_i)·D_i. `x` is the sample at σ₀ (already scaled); it is borrowed and a
 * new tensor is returned.
 *
 * @example
 * ```ts
 * const x0 = await sampleEuler(denoise, noiseTimesSigma0, sigmas, { signal });
 * ```
 */
export async function sampleEuler(
  denoiser: SigmaDenoiser,
  x: Tensor,
  sigmas: Float64Array,
  options: SamplerRunOptions = {},
): Promise<Tensor> {
  checkSigmas(sigmas);
  return runLoop(x, sigmas.length - 1, options, async (i, current) => {
    const sigma = sigmas[i]!;
    // 1. D_i = x̂₀(x_i, σ_i).
    const denoised = await denoiser(current, sigma);
    checkOutput(denoised, current, 'sigma denoiser');
    try {
      // 2. Euler step on dx/dσ = (x − D)/σ from σ_i to σ_{i+1}.
      const c = eulerCoefficients(sigma, sigmas[i + 1]!);
      const next = await fuse([current, denoised], [c.cX, c.cDenoised]);
      return { next, predOriginal: denoised, info: { sigma } };
    } catch (error) {
      denoised.dispose();
      throw error;
    }
  });
}
