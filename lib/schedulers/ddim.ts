/**
 * DDIM sampler on tensors (Song, Meng & Ermon 2021). Scalars come from `ddim-math.ts`; every update is one
 * `Tensor.combine`. η = 0 is deterministic DDIM; η = 1 (stage 2) adds ancestral noise drawn from the run's
 * seeded generator, like diffusers' `randn_tensor(generator=<CPU generator>)`.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { Generator, Tensor } from '../tensor.js';
import { TensorScope } from '../tensor.js';
import { ddimCoefficients, type DdimPlan } from './ddim-math.js';
import { checkOutput, drawNoise, fuse, runLoop } from './sampler-common.js';
import type { ModelDenoiser, NoiseRequest, SamplerRunOptions, StepNoise } from './types.js';

/** The result of one DDIM step. Both tensors are new and owned by the caller. */
export interface DdimStepResult {
  /** x_{t−1}. */
  readonly prevSample: Tensor;
  /** x̂₀ (clamped when the plan clips). */
  readonly predOriginal: Tensor;
}

/**
 * One DDIM update (diffusers `DDIMScheduler.step`) for plan step `index`. Borrows `x`, `modelOutput` and
 * `noise`. `noise` (standard normal, x's shape) is required when `eta` > 0.
 *
 * @example
 * ```ts
 * const { prevSample, predOriginal } = await ddimStep(plan, 0, x, eps, { eta: 0 });
 * ```
 */
export async function ddimStep(
  plan: DdimPlan,
  index: number,
  x: Tensor,
  modelOutput: Tensor,
  options: { readonly eta?: number | undefined; readonly noise?: Tensor | undefined } = {},
): Promise<DdimStepResult> {
  const eta = options.eta ?? 0;
  // 1.–3. ᾱ_t, ᾱ_prev, x̂₀/ε̂ coefficients and σ_t(η) (eq. 12, 16), in Float64 scalars.
  const c = ddimCoefficients(plan, index, eta);
  const { noise } = options;
  if (eta > 0 && noise === undefined) throw new InvalidArgumentError('`noise` is required when `eta` > 0');
  const noiseTerms = eta > 0 && noise !== undefined ? [noise] : [];
  const noiseCoeffs = eta > 0 ? [c.noiseStd] : [];
  // 4. x̂₀ = f_θ(x_t) ("predicted x₀", eq. 12), kept for the caller (randomized blending, previews).
  let predOriginal = await fuse([x, modelOutput], [c.x0X, c.x0Out]);
  try {
    if (plan.clipSampleRange === null) {
      // 5. eq. 12 in one combine: x_{t−1} = √ᾱ_prev·x̂₀ + √(1−ᾱ_prev−σ_t²)·ε̂ + σ_t·ε_t, with x̂₀ and ε̂
      //    both linear in (x_t, out): weights prevX and prevOut.
      const prevSample = await fuse([x, modelOutput, ...noiseTerms], [c.prevX, c.prevOut, ...noiseCoeffs]);
      return { prevSample, predOriginal };
    }
    // 5'. clip_sample: x̂₀ ← clamp(x̂₀, ±r); ε̂ stays the model's (diffusers, use_clipped_model_output = false).
    const clipped = await predOriginal.clamp(-plan.clipSampleRange, plan.clipSampleRange);
    predOriginal.dispose();
    predOriginal = clipped;
    const prevSample = await fuse(
      [x, clipped, modelOutput, ...noiseTerms],
      [c.direction * c.epsX, c.prevX0, c.direction * c.epsOut, ...noiseCoeffs],
    );
    return { prevSample, predOriginal };
  } catch (error) {
    predOriginal.dispose();
    throw error;
  }
}

/** Options of {@link sampleDdim}. */
export interface DdimOptions extends SamplerRunOptions {
  /** η of eq. 16: 0 = deterministic DDIM, 1 = DDPM-like ancestral sampling (stage 2). Default 0. */
  readonly eta?: number | undefined;
  /**
   * Source of the ancestral noise when η > 0: one `generator.randn(x.shape)` per step, on CPU, then moved to
   * x's device and dtype (diffusers semantics with a CPU generator; stage 2 passes its seed-33 generator, which
   * also drew the initial latents). Default none.
   */
  readonly generator?: Generator | undefined;
  /**
   * Alternative noise hook; used instead of `generator` when given. Default none. For a faithful stage 2 pass
   * {@link foldedFrameNoise}: diffusers' T2V pipeline steps on frames folded into the batch, so its noise is
   * drawn as [B·F, C, H, W], not [B, C, F, H, W].
   */
  readonly noise?: StepNoise | undefined;
}

/**
 * A {@link StepNoise} for video latents [B, C, F, H, W] that draws `generator.randn([B·F, C, H, W])` (the
 * layout diffusers' text-to-video pipeline hands to `DDIMScheduler.step`) and unfolds it to [B, C, F, H, W], so
 * the ancestral noise of stage 2 equals the reference's value for value.
 *
 * @example
 * ```ts
 * const gen = new Generator(33);
 * await sampleDdim(denoise, z, plan, { eta: 1, noise: foldedFrameNoise(gen) });
 * ```
 */
export function foldedFrameNoise(generator: Generator): StepNoise {
  return async (request: NoiseRequest): Promise<Tensor> => {
    const [b, c, f, h, w] = request.shape;
    if (request.shape.length !== 5 || b === undefined || c === undefined || f === undefined || h === undefined || w === undefined) {
      throw new InvalidArgumentError(`foldedFrameNoise needs [B, C, F, H, W] latents but received [${request.shape.join(', ')}]`);
    }
    const scope = new TensorScope();
    try {
      const folded = scope.track(await generator.randn([b * f, c, h, w], { device: request.device, dtype: request.dtype }));
      const split = scope.track(await folded.reshape([b, f, c, h, w]));
      return await split.permute([0, 2, 1, 3, 4]);
    } finally {
      scope.dispose();
    }
  };
}

/**
 * Runs a full DDIM loop: for each t_i, out = denoiser(x, t_i), then {@link ddimStep}. Borrows `x` (never
 * disposes it) and returns a new tensor. Reentrant: all per-run state is local.
 *
 * @example
 * ```ts
 * const plan = createDdimPlan(createDiscreteSchedule(ddimConfigFromDiffusers(json)), 50); // 981 … 1
 * const gen = new Generator(33);
 * const z0 = await gen.randn([1, 4, 16, 32, 32]);
 * const z = await sampleDdim(cfgDenoiser, z0, plan, { eta: 1, generator: gen, signal });
 * ```
 */
export async function sampleDdim(
  denoiser: ModelDenoiser,
  x: Tensor,
  plan: DdimPlan,
  options: DdimOptions = {},
): Promise<Tensor> {
  const eta = options.eta ?? 0;
  if (!(eta >= 0) || !Number.isFinite(eta)) throw new InvalidArgumentError(`Expected \`eta\` ≥ 0 but received ${eta}`);
  if (eta > 0 && options.noise === undefined && options.generator === undefined) {
    throw new InvalidArgumentError('sampleDdim with `eta` > 0 needs a `generator` or a `noise` hook');
  }
  return runLoop(x, plan.timesteps.length, options, async (i, current) => {
    const t = plan.timesteps[i]!;
    const scope = new TensorScope();
    try {
      const out = scope.track(await denoiser(current, t));
      checkOutput(out, current, 'denoiser');
      const request = { index: i, shape: current.shape, device: current.device, dtype: current.dtype };
      const noise = eta > 0 ? scope.track(await drawNoise(request, options.noise, options.generator)) : undefined;
      const { prevSample, predOriginal } = await ddimStep(plan, i, current, out, { eta, noise });
      return { next: prevSample, predOriginal, info: { timestep: t } };
    } finally {
      scope.dispose();
    }
  });
}
