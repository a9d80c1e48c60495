/**
 * DPM-Solver++(2M) SDE on tensors, in sigma (VE) space with k-diffusion `sample_dpmpp_2m_sde` semantics
 * (stage 3, spec §1.9). Scalars come from `sigma-math.ts`; each update is one `Tensor.combine` of
 * (x, D_i, D_{i−1}, n_i). The noise n_i comes from a hook, normally a {@link SharedNoiseSource} so that
 * overlapping chunks of a long video see identical noise.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { TensorScope } from '../tensor.js';
import { checkOutput, drawNoise, fuse, runLoop } from './sampler-common.js';
import { dpmpp2mSdeCoefficients, type Dpmpp2mSdeParams } from './sigma-math.js';
import type { SamplerRunOptions, SigmaDenoiser, StepNoise } from './types.js';

/** Options of {@link sampleDpmpp2mSde}. */
export interface Dpmpp2mSdeOptions extends SamplerRunOptions, Dpmpp2mSdeParams {
  /**
   * Standard normal noise n_i for step i (x's shape), e.g. `source.stepNoise()` of a
   * {@link SharedNoiseSource}. Required unless η = 0 or `sNoise` = 0.
   */
  readonly noise?: StepNoise | undefined;
  /**
   * Multiply the input by this before the first step. Default 1 (k-diffusion: the caller passes x at σ₀).
   * Stage 3 passes `sigmas[0]`: modelscope starts from x = z·σ₀ with the VP-noised z (spec G12; the
   * VP-consistent value would be z/α).
   */
  readonly inputScale?: number | undefined;
}

/** Checks a sigma list: finite, positive and strictly decreasing, then a final 0 or positive value. */
export function checkSigmas(sigmas: Float64Array): void {
  if (sigmas.length < 2) throw new InvalidArgumentError('Expected at least two sigmas');
  for (let i = 0; i < sigmas.length; i++) {
    const s = sigmas[i]!;
    const last = i === sigmas.length - 1;
    if (!Number.isFinite(s) || s < 0 || (!last && s === 0)) {
      throw new InvalidArgumentError(`Expected finite positive sigmas (a final 0 allowed) but sigmas[${i}] = ${s}`);
    }
    if (i > 0 && !(s < sigmas[i - 1]!)) throw new InvalidArgumentError('Expected strictly decreasing sigmas');
  }
}

/**
 * Runs DPM-Solver++(2M) SDE over `sigmas` (σ₀ > … > σ_{n−1} > σ_n, usually σ_n = 0). At each step
 * D_i = denoiser(x, σ_i) (x̂₀; the stage-3 pipeline does CFG, v→x̂₀ and randomized blending in there), then
 * x ← cX·x + cD·D_i + cOld·D_{i−1} + cN·n_i (see `dpmpp2mSdeCoefficients`, equations E1–E5). Borrows `x`,
 * returns a new tensor.
 *
 * @example
 * ```ts
 * const { sigmas } = sdeditSigmas(table, { steps: 30, tMax: 599 });
 * const source = new SharedNoiseSource({ seed: 0, shape: z.shape });
 * const lat0 = await sampleDpmpp2mSde(denoise, z, sigmas, { inputScale: sigmas[0], noise: source.stepNoise() });
 * ```
 */
export async function sampleDpmpp2mSde(
  denoiser: SigmaDenoiser,
  x: Tensor,
  sigmas: Float64Array,
  options: Dpmpp2mSdeOptions = {},
): Promise<Tensor> {
  checkSigmas(sigmas);
  const eta = options.eta ?? 1;
  const sNoise = options.sNoise ?? 1;
  if (!(eta >= 0 && Number.isFinite(eta))) throw new InvalidArgumentError(`Expected \`eta\` ≥ 0 but received ${eta}`);
  const stochastic = eta > 0 && sNoise !== 0;
  if (stochastic && options.noise === undefined) {
    throw new InvalidArgumentError('sampleDpmpp2mSde with `eta` > 0 needs a `noise` hook (e.g. SharedNoiseSource.stepNoise())');
  }
  const scale = options.inputScale ?? 1;
  const start = scale === 1 ? x : await fuse([x], [scale]); // G12: x = z·σ₀ for stage 3
  let old: Tensor | undefined;
  let hLast: number | undefined;
  try {
    return await runLoop(start, sigmas.length - 1, options, async (i, current) => {
      const sigma = sigmas[i]!;
      const sigmaNext = sigmas[i + 1]!;
      const scope = new TensorScope();
      try {
        // (E0) D_i = x̂₀(x_i, σ_i).
        const denoised = await denoiser(current, sigma);
        checkOutput(denoised, current, 'sigma denoiser');
        const c = dpmpp2mSdeCoefficients(sigma, sigmaNext, old === undefined ? undefined : hLast, options);
        const terms: Tensor[] = [current, denoised];
        const coeffs: number[] = [c.cX, c.cDenoised];
        if (old !== undefined && c.cOldDenoised !== 0) {
          terms.push(old);
          coeffs.push(c.cOldDenoised);
        }
        if (c.cNoise !== 0 && stochastic) {
          const request = { index: i, shape: current.shape, device: current.device, dtype: current.dtype, sigma, sigmaNext };
          terms.push(scope.track(await drawNoise(request, options.noise, undefined)));
          coeffs.push(c.cNoise);
        }
        // (E2)–(E5) in one combine.
        let next: Tensor;
        try {
          next = await fuse(terms, coeffs);
        } catch (error) {
          denoised.dispose();
          throw error;
        }
        old?.dispose();
        old = denoised;
        if (sigmaNext !== 0) hLast = c.h;
        return { next, predOriginal: denoised, info: { sigma }, keepPredOriginal: true };
      } finally {
        scope.dispose();
      }
    });
  } finally {
    old?.dispose();
    if (start !== x) start.dispose();
  }
}
