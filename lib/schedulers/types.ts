/**
 * Shared types of the diffusion core: configs (frozen, from the model manifest), denoisers, per-step
 * callbacks and noise hooks. This module is type-only at run time, so pure code can import it freely.
 *
 * @module
 */
import type { DType, Tensor } from '../tensor.js';

/**
 * What the network predicts (diffusers `prediction_type`).
 * - `epsilon`: the added noise ε.
 * - `v_prediction`: v = α_t·ε − σ_t·x₀ (Salimans & Ho 2022).
 * - `sample`: x₀ itself.
 */
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';

/** Beta schedule of a discrete VP model (diffusers `beta_schedule`). */
export type BetaScheduleName = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';

/**
 * How inference timesteps are picked from the training timesteps (diffusers `timestep_spacing`,
 * Table 2 of Lin et al. 2023, arXiv 2305.08891).
 */
export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';

/** The discrete VP noise schedule shared by every diffusers-style scheduler. */
export interface NoiseScheduleConfig {
  /** Number of training timesteps N (`num_train_timesteps`). Default 1000. */
  readonly numTrainTimesteps: number;
  /** `beta_schedule`. Default `linear`. */
  readonly betaSchedule: BetaScheduleName;
  /** `beta_start`. Default 0.0001. Example: 0.00085 for ModelScope T2V. */
  readonly betaStart: number;
  /** `beta_end`. Default 0.02. Example: 0.012 for ModelScope T2V. */
  readonly betaEnd: number;
  /** `trained_betas`: explicit betas, overriding `betaSchedule`. Default none. */
  readonly trainedBetas?: readonly number[] | undefined;
  /** `prediction_type`. Default `epsilon`. */
  readonly predictionType: PredictionType;
  /** `timestep_spacing`. Default `leading` for DDIM, `linspace` for DPM-Solver. */
  readonly timestepSpacing: TimestepSpacing;
  /** `steps_offset`, added to `leading` timesteps only. Default 0 (ModelScope T2V: 1). */
  readonly stepsOffset: number;
}

/** DDIM scheduler config (diffusers `DDIMScheduler`). Stage 2 uses it with η = 1. */
export interface DdimConfig extends NoiseScheduleConfig {
  /**
   * `set_alpha_to_one`: on the last step use ᾱ_prev = 1 (true) or ᾱ_prev = ᾱ₀ (false). Default true;
   * ModelScope T2V: false (spec G14).
   */
  readonly setAlphaToOne: boolean;
  /** `clip_sample`: clamp x̂₀ to ±`clipSampleRange`. Default true in diffusers; ModelScope T2V: false. */
  readonly clipSample: boolean;
  /** `clip_sample_range`. Default 1. */
  readonly clipSampleRange: number;
}

/** What the last sigma of a DPM-Solver schedule is (diffusers `final_sigmas_type`). */
export type FinalSigmasType = 'zero' | 'sigma_min';

/**
 * DPM-Solver++ multistep config (diffusers 0.27 `DPMSolverMultistepScheduler` with `algorithm_type
 * "dpmsolver++"`, `solver_type "midpoint"`). Stage 1 builds it from the DDIM config (spec §1.4).
 */
export interface DpmSolverConfig extends NoiseScheduleConfig {
  /** `solver_order`: 1 or 2 (3 is not implemented). Default 2. */
  readonly solverOrder: 1 | 2;
  /** `lower_order_final`: first-order last step when fewer than 15 steps. Default true. */
  readonly lowerOrderFinal: boolean;
  /** `euler_at_final`: always take a first-order last step. Default false. */
  readonly eulerAtFinal: boolean;
  /** `final_sigmas_type`. Default `zero` (the last step jumps to x̂₀ and is first order). */
  readonly finalSigmasType: FinalSigmasType;
  /** `lambda_min_clipped`: drop training timesteps whose λ is below this. Default −∞. */
  readonly lambdaMinClipped: number;
}

/**
 * MS-Vid2Vid-XL `noise_schedule('logsnr_cosine_interp', …)` (spec §1.9). Stage 3.
 */
export interface LogSnrCosineInterpConfig {
  /** Number of table entries n. Default 1000. */
  readonly numTrainTimesteps: number;
  /** log-SNR at u = 0 of the unshifted cosine schedule. Default −15. */
  readonly logsnrMin: number;
  /** log-SNR at u = 1 of the unshifted cosine schedule. Default 15. */
  readonly logsnrMax: number;
  /** Shift s of the schedule used at u = 1 (λ += 2·log(1/s)). Default 2. */
  readonly scaleMin: number;
  /** Shift s of the schedule used at u = 0. Default 4. */
  readonly scaleMax: number;
  /** Rescale σ affinely so that max σ = 1 (zero terminal SNR). Default true. */
  readonly zeroTerminalSnr: boolean;
  /** What the model predicts. MS-Vid2Vid-XL: `v_prediction`. */
  readonly predictionType: PredictionType;
}

/**
 * A diffusers-style denoiser: the raw model output (ε, v or x₀ per {@link PredictionType}) at the
 * integer training timestep `t`. It must not dispose `x`; the sampler owns and disposes the result.
 * CFG lives inside it (see `guidance.ts`).
 */
export type ModelDenoiser = (x: Tensor, t: number) => Promise<Tensor>;

/**
 * A k-diffusion-style denoiser in sigma (VE) space: returns x̂₀ = D(x; σ) for the unscaled
 * x = x₀ + σ·ε. It must not dispose `x`; the sampler owns and disposes the result.
 */
export type SigmaDenoiser = (x: Tensor, sigma: number) => Promise<Tensor>;

/** What a noise hook is asked for. */
export interface NoiseRequest {
  /** Solver step index (0-based). */
  readonly index: number;
  /** Shape of the sample (the noise must have this shape). */
  readonly shape: readonly number[];
  readonly device: string;
  readonly dtype: DType;
  /** σ_i and σ_{i+1} for sigma-space samplers; undefined for DDIM. */
  readonly sigma?: number | undefined;
  readonly sigmaNext?: number | undefined;
}

/**
 * Supplies the standard normal noise a stochastic step needs. The sampler owns (and disposes) the
 * returned tensor. Example: `(r) => Tensor.randn(r.shape, 1234n + BigInt(r.index), r)`.
 */
export type StepNoise = (request: NoiseRequest) => Promise<Tensor>;

/** What `onStep` receives after every solver step. Tensors are borrowed: valid only during the call. */
export interface StepInfo {
  /** 0-based step index. */
  readonly index: number;
  /** Number of steps in this run. */
  readonly total: number;
  /** Training timestep of this step (diffusers-style samplers). */
  readonly timestep?: number | undefined;
  /** σ_i (VE) of this step. */
  readonly sigma?: number | undefined;
  /** The sample after this step (x_{t−1} / x at σ_{i+1}). Borrowed. */
  readonly x: Tensor;
  /** x̂₀ predicted at this step. Borrowed; randomized blending and previews read it. */
  readonly predOriginal: Tensor;
}

/** Options every sampler loop accepts. */
export interface SamplerRunOptions {
  /** Checked between steps; an abort rejects with `signal.reason`. Default none. */
  readonly signal?: AbortSignal | undefined;
  /** Called (and awaited) after every step. Default none. */
  readonly onStep?: ((info: StepInfo) => void | Promise<void>) | undefined;
}
