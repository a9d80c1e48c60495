/**
 * Stage 3 of a run (spec §1.8-§1.9, §4.2): the enhancer over all preview frames, SDEdit with one noise tensor for the
 * whole video and randomized blending of overlapping chunks at every step; yields final frames per decoded batch.
 * @module
 */
import { Generator, Tensor, TensorScope } from '../tensor.js';
import { createLogSnrCosineInterpSchedule, sdeditSigmas } from '../schedulers/logsnr-cosine.js';
import { sampleDpmpp2mSde } from '../schedulers/dpmpp-2m-sde.js';
import { SharedNoiseSource } from '../noise-source.js';
import { createBlendedDenoiser } from './blending.js';
import { planStage3Chunks } from './chunk-plan.js';
import type { PipelineModels } from './models.js';
import type { ResolvedGenerateOptions } from './options.js';
import { Pcg32 } from './prng.js';
import type { ProgressTracker } from './progress.js';
import type { derivedSeeds } from './seeds.js';
import { decodeToRgb, encodeFramesForEnhancement, enhancedSize, enhancerChunkDenoiser } from './stage3.js';
import { encodeCfgPair } from './text.js';
import type { GeneratedFrame } from './types.js';

/** The official stage-3 start timestep (noise level 600, spec G11). */
const OFFICIAL_STAGE3_START = 599;

/**
 * The factor the SDEdit latent z = α·x0 + σ·ε is multiplied by to start the VE-space solver.
 * At the official start t0 = 599 it is σ_ve(t0) = σ/α, modelscope's quirk (spec G12), kept for parity: it
 * equals the VP-consistent 1/α times σ_vp(599) ≈ 0.972. At any other start the VP-consistent 1/α is used:
 * the quirk's extra factor σ_vp(t0) goes to 0 with the noise level (0.06 at t0 = 19), which would shrink
 * the start latent and give dark, washed-out frames (measured on models/default: mean |final − preview|
 * 71 grey levels at noise level 20 with the quirk).
 */
export function stage3StartScale(t0: number, alpha: number, sigmaVe: number): number {
  return t0 === OFFICIAL_STAGE3_START ? sigmaVe : 1 / alpha;
}

/** What stage 3 needs from the run. */
export interface EnhanceInput {
  frames: number;
  width: number;
  height: number;
  preview: (from: number, count: number) => Promise<Uint8Array>;
  seeds: ReturnType<typeof derivedSeeds>;
  progress: ProgressTracker;
  splitCfg: boolean;
}

/** Stage 3 over all preview frames; yields final frames per decoded batch. */
export async function* enhance(models: PipelineModels, o: ResolvedGenerateOptions, input: EnhanceInput): AsyncGenerator<GeneratedFrame, void, undefined> {
  const d = models.defaults;
  const e = o.enhance === false ? undefined : o.enhance;
  if (e === undefined) return;
  const device = models.device;
  const signal = o.signal;
  const geometry = { size: e.size, padWidth: d.stage3.padWidth, layout: e.layout };
  const out = enhancedSize(geometry);
  const scope = new TensorScope();
  using posteriorGen = new Generator(input.seeds.stage3);
  try {
    // 1. Encode all frames (batches of `encodeBatch`), posterior samples, to [1, C, L, h, w].
    const parts: Tensor[] = [];
    let latents: Tensor;
    try {
      for (let s = 0; s < input.frames; s += e.encodeBatch) {
        signal?.throwIfAborted();
        const n = Math.min(e.encodeBatch, input.frames - s);
        const rgb = await input.preview(s, n);
        parts.push(await encodeFramesForEnhancement(models.module('enhancer_vae_encoder'), rgb, n, input.height, input.width, geometry, posteriorGen, device));
        input.progress.encode(s + n, input.frames);
      }
      latents = scope.track(parts.length === 1 ? parts.pop()! : await Tensor.cat(parts, 2));
    } finally {
      parts.forEach((t) => t.dispose());
    }
    // 2. SDEdit: z = α_t0·x0 + σ_t0·ε with one noise tensor for the whole video (spec §4.2).
    const table = createLogSnrCosineInterpSchedule(d.stage3.scheduler);
    const t0 = e.noiseLevel - 1;
    const { sigmas } = sdeditSigmas(table, { steps: e.steps, tMax: t0 });
    const source = new SharedNoiseSource({ seed: input.seeds.stage3, shape: latents.shape, device, dtype: latents.dtype });
    const eps = scope.track(await source.initialNoise());
    const alpha = table.alphas[t0]!;
    const sigma = table.sigmas[t0]!;
    const z = scope.track(await Tensor.combine([latents, eps], [alpha, sigma]));
    // 3. DPM++(2M) SDE with randomized blending of x̂0 over chunks at every step (spec §1.9, G12).
    const context = scope.track(
      await encodeCfgPair(`${o.prompt}${d.stage3.promptSuffix}${e.positiveSuffix}`, e.negativePrompt, models.tokenizeEnhancer, models.module('enhancer_text_encoder'), device),
    );
    const chunkPlan = planStage3Chunks({ length: input.frames, chunkFrames: e.chunkFrames, overlapFrames: e.overlapFrames });
    const chunkDenoise = enhancerChunkDenoiser(models.module('enhancer_unet'), context, table, e.guidance, e.rescale, d.stage3.scheduler.predictionType, input.splitCfg);
    const rng = new Pcg32(input.seeds.blend);
    const denoise = createBlendedDenoiser((x, s) => chunkDenoise(x, s), { plan: chunkPlan, rng });
    const lat0 = scope.track(
      await sampleDpmpp2mSde(denoise, z, sigmas, {
        inputScale: stage3StartScale(t0, alpha, sigmas[0]!),
        noise: source.stepNoise(),
        signal,
        onStep: (s) => input.progress.step('stage3', 0, s.index, s.total),
      }),
    );
    // 4. Decode in batches and stream.
    const frameBytes = out.width * out.height * 3;
    let index = 0;
    for (let s = 0; s < input.frames; s += e.decodeBatch) {
      signal?.throwIfAborted();
      const n = Math.min(e.decodeBatch, input.frames - s);
      const part = await lat0.narrow(2, s, n);
      let rgb: Uint8Array;
      try {
        rgb = await decodeToRgb(models.module('enhancer_vae_decoder'), part);
      } finally {
        part.dispose();
      }
      for (let i = 0; i < n; i++) {
        yield { index: index++, stage: 'final', width: out.width, height: out.height, data: rgb.subarray(i * frameBytes, (i + 1) * frameBytes) };
      }
      input.progress.finalFrames(index, input.frames);
    }
  } finally {
    scope.dispose();
  }
}
