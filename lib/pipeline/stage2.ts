/**
 * Stage 2 (spec §1.5, §1.6): one autoregressive 16-frame window of StreamingT2V.
 *
 * - CAM (short-term memory): the previous window's last 8 *decoded* frames in [-1, 1], the same in
 *   both CFG halves (G15);
 * - APM (long-term memory): 16 anchor tokens appended to the 77 text tokens; the unconditional half
 *   uses the grey-image tokens (G5);
 * - DDIM, leading spacing with offset 1, eta 1, CFG 7.5, 50 steps; fresh noise per window from the
 *   run's generator, which also provides DDIM's ancestral noise (G1, G2);
 * - optionally (`replaceOverlap`, not in the paper) positions 0..7 re-noised from the CAM frames' own latents for
 *   the first share of the steps ({@link replaceKnownFrames}).
 * @module
 */
import { type Generator, Tensor, TensorScope } from '../tensor.js';
import { createDiscreteSchedule } from '../schedulers/betas.js';
import { createDdimPlan } from '../schedulers/ddim-math.js';
import { foldedFrameNoise, sampleDdim } from '../schedulers/ddim.js';
import type { StepInfo } from '../schedulers/types.js';
import { guidedForward } from './cfg.js';
import type { PipelineModels } from './models.js';
import { encodeKnownFrames, replaceKnownFrames } from './replace-overlap.js';

/**
 * The 93-token context of both CFG halves: [negative text ; grey tokens] and [prompt text ; anchor tokens].
 * `text` is [2, 77, D] (uncond first); `greyTokens`/`anchorTokens` are [1, 16, D]. Returns [2, 93, D].
 */
export async function stage2Context(text: Tensor, greyTokens: Tensor, anchorTokens: Tensor): Promise<Tensor> {
  using scope = new TensorScope();
  const tokens = scope.track(await Tensor.cat([greyTokens, anchorTokens], 0));
  return await Tensor.cat([text, tokens], 1);
}

/** Inputs of {@link runStage2Window}. */
export interface Stage2WindowRun {
  /** [2, 93, D] from {@link stage2Context}. */
  context: Tensor;
  /** The short-term memory: [1, 3, 8, H, W] in [-1, 1]. */
  condFrames: Tensor;
  /** The run's stage-2 generator: draws the window's initial noise, then DDIM's ancestral noise. */
  generator: Generator;
  steps: number;
  guidance: number;
  eta: number;
  /** Share of the steps (from the first) that denoise the new frames beside the CAM frames' own noised latents ({@link replaceKnownFrames}; not in the paper). Default 0. */
  replaceOverlap?: number | undefined;
  /** Run the CFG pair as two UNet calls (memory plan). Default false. */
  splitCfg?: boolean | undefined;
  signal?: AbortSignal | undefined;
  onStep?: ((info: StepInfo) => void | Promise<void>) | undefined;
}

/** Generates one window and returns its 16 decoded frames in [-1, 1], [1, 3, 16, H, W] (caller owns). */
export async function runStage2Window(models: PipelineModels, run: Stage2WindowRun): Promise<Tensor> {
  const d = models.defaults;
  const [, , , height, width] = run.condFrames.shape as [number, number, number, number, number];
  using scope = new TensorScope();
  const cond2 = scope.track(await Tensor.cat([run.condFrames, run.condFrames], 0));
  const shape = [1, d.latentChannels, d.stage2.window, height / d.vaeFactor, width / d.vaeFactor];
  const z = scope.track(await run.generator.randn(shape, { device: models.device }));
  const schedule = createDiscreteSchedule(d.stage2.scheduler);
  const plan = createDdimPlan(schedule, run.steps);
  const unet = models.module('unet_stage2');
  const replaced = new Set(plan.timesteps.slice(0, Math.round((run.replaceOverlap ?? 0) * plan.timesteps.length)));
  const known = replaced.size > 0 ? scope.track(await encodeKnownFrames(models.module('vae_encoder'), run.condFrames)) : undefined;
  const forward = (x: Tensor, t: number) => guidedForward(unet, x, t, [run.context, cond2], { scale: run.guidance, splitBatch: run.splitCfg });
  const denoise = async (x: Tensor, t: number): Promise<Tensor> => {
    if (known === undefined || !replaced.has(t)) return forward(x, t);
    using input = await replaceKnownFrames(x, known, schedule.alphasCumprod[t]!, run.generator);
    return await forward(input, t);
  };
  const latents = scope.track(
    await sampleDdim(denoise, z, plan, {
      eta: run.eta,
      noise: foldedFrameNoise(run.generator),
      signal: run.signal,
      onStep: run.onStep,
    }),
  );
  run.signal?.throwIfAborted();
  const decoded = scope.track(await models.module('vae_decoder').forwardTensor([latents]));
  return await decoded.clamp(-1, 1);
}
