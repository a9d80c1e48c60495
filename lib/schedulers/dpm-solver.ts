/**
 * DPM-Solver++(2M) multistep sampler on tensors (stage 1; diffusers 0.27 `DPMSolverMultistepScheduler`,
 * `dpmsolver++`, midpoint, order 2, `lower_order_final`). Scalars come from `dpm-solver-math.ts`; each
 * update is one `Tensor.combine`. The multistep history (the previous x̂₀) is a loop local, so one plan can
 * drive any number of concurrent runs.
 *
 * @module
 */
import type { Tensor } from '../tensor.js';
import { TensorScope } from '../tensor.js';
import { dpmSolverCoefficients, type DpmSolverPlan } from './dpm-solver-math.js';
import { checkOutput, fuse, runLoop } from './sampler-common.js';
import type { ModelDenoiser, SamplerRunOptions } from './types.js';
import { InvalidArgumentError } from '../errors.js';

/** The result of one DPM-Solver++ step. Both tensors are new and owned by the caller. */
export interface DpmSolverStepResult {
  /** x at t_{i+1} (x̃_{t_i} in the paper's indexing). */
  readonly prevSample: Tensor;
  /** x̂₀ = x_θ(x, t_i): pass it back as `previousPredOriginal` on the next step. */
  readonly predOriginal: Tensor;
}

/**
 * One DPM-Solver++ update for plan step `index`. Borrows `x`, `modelOutput` and `previousPredOriginal`
 * (the x̂₀ of step index−1; required when the plan's order at `index` is 2).
 *
 * @example
 * ```ts
 * let prev: Tensor | undefined;
 * const r = await dpmSolverStep(plan, i, x, eps, prev);
 * ```
 */
export async function dpmSolverStep(
  plan: DpmSolverPlan,
  index: number,
  x: Tensor,
  modelOutput: Tensor,
  previousPredOriginal?: Tensor,
): Promise<DpmSolverStepResult> {
  const c = dpmSolverCoefficients(plan, index);
  // 1. Data prediction m0 = x_θ(x_s, s) (diffusers `convert_model_output`).
  const predOriginal = await fuse([x, modelOutput], [c.x0X, c.x0Out]);
  try {
    if (c.order === 1) {
      // 2. First-order update: x_t = (σ_t/σ_s)·x − α_t(e^{−h} − 1)·m0 (x_t = m0 on the jump to σ = 0).
      return { prevSample: await fuse([x, predOriginal], [c.cX, c.cM0]), predOriginal };
    }
    if (previousPredOriginal === undefined) {
      throw new InvalidArgumentError(`DPM-Solver++ step ${index} is second order and needs \`previousPredOriginal\``);
    }
    // 3. DPM-Solver++(2M), Algorithm 2: x_t = (σ_t/σ_s0)·x − α_t(e^{−h}−1)·m0 − ½α_t(e^{−h}−1)·(m0 − m1)/r0.
    const prevSample = await fuse([x, predOriginal, previousPredOriginal], [c.cX, c.cM0, c.cM1]);
    return { prevSample, predOriginal };
  } catch (error) {
    predOriginal.dispose();
    throw error;
  }
}

/**
 * Runs a full DPM-Solver++ loop: for each t_i, out = denoiser(x, t_i), then {@link dpmSolverStep} with the
 * previous step's x̂₀. Borrows `x` and returns a new tensor. Deterministic (no noise).
 *
 * @example
 * ```ts
 * const cfg = dpmSolverConfigFromDiffusers(ddimSchedulerJson); // stage 1, spec §1.4
 * const plan = createDpmSolverPlan(createDiscreteSchedule(cfg), 50); // 999, 979, …, 20
 * const latents = await sampleDpmSolverMultistep(cfgDenoiser, noise, plan, { onStep });
 * ```
 */
export async function sampleDpmSolverMultistep(
  denoiser: ModelDenoiser,
  x: Tensor,
  plan: DpmSolverPlan,
  options: SamplerRunOptions = {},
): Promise<Tensor> {
  let history: Tensor | undefined;
  try {
    return await runLoop(x, plan.timesteps.length, options, async (i, current) => {
      const t = plan.timesteps[i]!;
      const scope = new TensorScope();
      try {
        const out = scope.track(await denoiser(current, t));
        checkOutput(out, current, 'denoiser');
        const { prevSample, predOriginal } = await dpmSolverStep(plan, i, current, out, history);
        history?.dispose();
        history = predOriginal; // the loop lends it to onStep; the next step reads it as m1
        return { next: prevSample, predOriginal, info: { timestep: t }, keepPredOriginal: true };
      } finally {
        scope.dispose();
      }
    });
  } finally {
    history?.dispose();
  }
}
