/**
 * Stage 1 (spec §1.4): the first 16 frames from the text-to-video UNet with DPM-Solver++(2M),
 * classifier-free guidance on [negative; prompt] (official: empty negative, CFG 9, 50 steps),
 * then decoded by the VAE. Returns the video in [-1, 1] as [1, 3, F, H, W].
 * @module
 */
import { Generator, Tensor, TensorScope } from '../tensor.js';
import { createDiscreteSchedule } from '../schedulers/betas.js';
import { createDpmSolverPlan } from '../schedulers/dpm-solver-math.js';
import { sampleDpmSolverMultistep } from '../schedulers/dpm-solver.js';
import type { StepInfo } from '../schedulers/types.js';
import { guidedForward } from './cfg.js';
import type { PipelineModels } from './models.js';
import { encodeCfgPair } from './text.js';

/** Inputs of {@link runStage1}. */
export interface Stage1Run {
  /** [2, 77, D] text embeddings [negative; prompt] when the caller already has them (borrowed). */
  text?: Tensor | undefined;
  prompt: string;
  negativePrompt: string;
  seed: number | bigint;
  steps: number;
  guidance: number;
  /** Run the CFG pair as two UNet calls (memory plan). Default false. */
  splitCfg?: boolean | undefined;
  signal?: AbortSignal | undefined;
  onStep?: ((info: StepInfo) => void | Promise<void>) | undefined;
}

/** Runs stage 1 and returns the decoded 16-frame video in [-1, 1], [1, 3, F, H, W] (caller owns). */
export async function runStage1(models: PipelineModels, run: Stage1Run): Promise<Tensor> {
  const d = models.defaults;
  const { frames, height, width } = d.stage1;
  using scope = new TensorScope();
  using gen = new Generator(run.seed);
  const ctx = run.text ?? scope.track(await encodeCfgPair(run.prompt, run.negativePrompt, models.tokenize, models.module('text_encoder'), models.device));
  // init_noise_sigma = 1 for DPM-Solver++ on a VP schedule: latents are plain N(0, I).
  const z = scope.track(await gen.randn([1, d.latentChannels, frames, height / d.vaeFactor, width / d.vaeFactor], { device: models.device }));
  const plan = createDpmSolverPlan(createDiscreteSchedule(d.stage1.scheduler), run.steps);
  const unet = models.module('unet_stage1');
  const latents = scope.track(
    await sampleDpmSolverMultistep((x, t) => guidedForward(unet, x, t, [ctx], { scale: run.guidance, splitBatch: run.splitCfg }), z, plan, {
      signal: run.signal,
      onStep: run.onStep,
    }),
  );
  run.signal?.throwIfAborted();
  const decoded = scope.track(await models.module('vae_decoder').forwardTensor([latents]));
  // The official pipeline returns clamp(video/2 + 0.5, 0, 1) and stage 2 maps it back with 2x - 1.
  return await decoded.clamp(-1, 1);
}
