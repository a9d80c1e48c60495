/**
 * The three-stage StreamingT2V run as one async generator of frames (issue 5): stage 1, the
 * autoregressive stage-2 loop (streamed 8 frames per window, persisted after every window when a
 * state directory is given) and the optional stage-3 enhancement (streamed per decoded batch).
 *
 * Backpressure is the generator protocol itself: nothing after a `yield` runs until the consumer
 * asks for the next frame, so a slow consumer pauses generation. Every native tensor is released
 * in `finally`, so `break`, abort and errors all clean up.
 * @module
 */
import { emptyCache } from '../device.js';
import { OutOfMemoryError, hasErrorCode } from '../errors.js';
import { Generator, Tensor, TensorScope } from '../tensor.js';
import { createLogSnrCosineInterpSchedule, sdeditSigmas } from '../schedulers/logsnr-cosine.js';
import { sampleDpmpp2mSde } from '../schedulers/dpmpp-2m-sde.js';
import { SharedNoiseSource } from '../noise-source.js';
import { createBlendedDenoiser } from './blending.js';
import { planStage2Windows, planStage3Chunks } from './chunk-plan.js';
import { LongTermMemory, ShortTermMemory, serializeTensor } from './memory.js';
import { NO_MEMORY_PLAN, type RunMemorySettings } from './memory-plan.js';
import { placeForStage } from './placement.js';
import type { PipelineModels } from './models.js';
import { Pcg32 } from './prng.js';
import { ProgressTracker } from './progress.js';
import type { ResolvedGenerateOptions } from './options.js';
import { RunStateStore, runKey } from './run-state.js';
import { runStage1 } from './stage1.js';
import { runStage2Window, stage2Context } from './stage2.js';
import { decodeToRgb, encodeFramesForEnhancement, enhancedSize, enhancerChunkDenoiser } from './stage3.js';
import { encodeCfgPair } from './text.js';
import type { GeneratedFrame } from './types.js';

/** Splits RGB bytes of `count` frames into per-frame views. */
function* splitFrames(rgb: Uint8Array, count: number, frameBytes: number): IterableIterator<Uint8Array> {
  for (let i = 0; i < count; i++) yield rgb.subarray(i * frameBytes, (i + 1) * frameBytes);
}

/** Derives the stage-2 and stage-3 seeds from the run seed (distinct streams, reproducible). */
export function derivedSeeds(seed: number): { stage1: number; stage2: bigint; stage3: bigint; blend: bigint } {
  const mix = (k: number) => (BigInt(seed) * 0x9e3779b97f4a7c15n + BigInt(k) * 0xbf58476d1ce4e5b9n) & 0x7fffffffffffffffn;
  return { stage1: seed, stage2: mix(2), stage3: mix(3), blend: mix(4) };
}

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

/** Returns the CUDA caching allocator's free blocks to the driver (between stages, under a memory plan). No-op on CPU. */
async function releaseCachedMemory(device: string, memory: RunMemorySettings): Promise<void> {
  if (memory.releaseCachedMemory && device.startsWith('cuda')) await emptyCache(device);
}

/**
 * Runs the whole pipeline for already-validated options and yields frames as soon as they exist:
 * preview frames (stage 1 + 2, in order), then final frames (stage 3) when enhancement is on.
 * `memory` applies a memory plan: per-stage CFG split and releasing cached memory between stages.
 */
export async function* generateFrames(models: PipelineModels, o: ResolvedGenerateOptions, memory: RunMemorySettings = NO_MEMORY_PLAN): AsyncGenerator<GeneratedFrame, void, undefined> {
  const d = models.defaults;
  const device = models.device;
  const signal = o.signal;
  const plan = planStage2Windows({ numFrames: o.numFrames, windowFrames: d.stage2.window, conditioningFrames: d.stage2.condFrames });
  const width = d.stage1.width;
  const height = d.stage1.height;
  const frameBytes = width * height * 3;
  const seeds = derivedSeeds(o.seed);
  const progress = new ProgressTracker(o, plan.windows, o.onProgress);
  const key = runKey({ v: 1, o: o.identity, model: o.modelKey });
  const store = o.stateDir === undefined ? undefined : new RunStateStore(o.stateDir);
  const scope = new TensorScope();
  let shortTerm = new ShortTermMemory({ conditioningFrames: d.stage2.condFrames });
  let longTerm: LongTermMemory | undefined;
  using gen2 = new Generator(seeds.stage2);
  // Preview frames are kept (uint8 on the CPU) only when stage 3 needs them and no state dir holds them.
  const keepPreview = o.enhance !== false && store === undefined ? new Uint8Array(o.numFrames * frameBytes) : undefined;
  let framesDone = 0;
  // Where the run is, so that an out-of-memory error can say which stage and window failed.
  const where: { stage: 'stage1' | 'stage2' | 'stage3'; window: number } = { stage: 'stage1', window: 0 };

  const emitPreview = function* (rgb: Uint8Array, count: number): IterableIterator<GeneratedFrame> {
    for (const data of splitFrames(rgb, count, frameBytes)) {
      keepPreview?.set(data, framesDone * frameBytes);
      yield { index: framesDone++, stage: 'preview', width, height, data };
    }
  };

  try {
    signal?.throwIfAborted();
    await placeForStage(models, memory.placement?.stage1, device);
    const apm = models.module('apm_image_encoder');
    const encodeImage = (image: Tensor) => apm.forwardTensor([image]);
    const text = scope.track(await encodeCfgPair(o.prompt, o.negativePrompt, models.tokenize, models.module('text_encoder'), device));
    const resumed = store === undefined ? undefined : await store.load(key);
    let nextWindow = 1;

    if (resumed !== undefined) {
      // ---- resume: restore memories and RNG exactly; re-emit the preview frames already made ----
      await placeForStage(models, memory.placement?.stage2, device);
      shortTerm.dispose();
      shortTerm = await ShortTermMemory.restore(
        { conditioningFrames: d.stage2.condFrames, frames: { data: resumed.memory, shape: resumed.memoryShape, dtype: 'float32' } },
        device,
      );
      const anchor = scope.track(await Tensor.fromArray(resumed.anchor, resumed.anchorShape, { device }));
      longTerm = await LongTermMemory.create(anchor, encodeImage);
      await gen2.setState(Buffer.from(resumed.generator, 'base64'));
      nextWindow = resumed.nextWindow;
      const done = await store!.readPreview(0, resumed.framesDone, width, height);
      yield* emitPreview(done, resumed.framesDone);
      progress.resumed(resumed.framesDone, nextWindow);
    } else {
      // ---- stage 1 ----
      await store?.reset();
      const video = scope.track(
        await runStage1(models, {
          text,
          prompt: o.prompt,
          negativePrompt: o.negativePrompt,
          seed: seeds.stage1,
          steps: o.stage1.steps,
          guidance: o.stage1.guidance,
          splitCfg: memory.splitCfg.stage1,
          signal,
          onStep: (s) => progress.step('stage1', 0, s.index, s.total),
        }),
      );
      await placeForStage(models, memory.placement?.stage2, device);
      const frame0 = scope.track(await video.narrow(2, 0, 1));
      const anchor = scope.track(await frame0.reshape([1, 3, height, width])); // frame 0 of stage 1, forever (G4)
      longTerm = await LongTermMemory.create(anchor, encodeImage);
      await shortTerm.update(video);
      const keep = plan.segments[0]!.keepCount;
      const rgb = await video.toRgbFrames();
      scope.track(video).dispose();
      if (store !== undefined) await store.appendPreview(rgb.subarray(0, keep * frameBytes));
      if (store !== undefined) await persist(store, key, 1, keep);
      yield* emitPreview(rgb, keep);
      progress.windowDone(0, framesDone);
    }

    // ---- stage 2: autoregressive windows ----
    await releaseCachedMemory(device, memory);
    const context = scope.track(await stage2Context(text, longTerm.uncondTokens, longTerm.condTokens));
    for (let k = nextWindow; k <= plan.windows; k++) {
      signal?.throwIfAborted();
      where.stage = 'stage2';
      where.window = k;
      const segment = plan.segments[k]!;
      const window = await runStage2Window(models, {
        context,
        condFrames: shortTerm.frames,
        generator: gen2,
        steps: o.stage2.steps,
        guidance: o.stage2.guidance,
        eta: o.stage2.eta,
        replaceOverlap: o.stage2.replaceOverlap,
        splitCfg: memory.splitCfg.stage2,
        signal,
        onStep: (s) => progress.step('stage2', k, s.index, s.total),
      });
      let rgb: Uint8Array;
      try {
        await shortTerm.update(window);
        const kept = await window.narrow(2, segment.keepStart, segment.keepCount);
        try {
          rgb = await kept.toRgbFrames();
        } finally {
          kept.dispose();
        }
      } finally {
        window.dispose();
      }
      if (store !== undefined) {
        await store.appendPreview(rgb);
        await persist(store, key, k + 1, framesDone + segment.keepCount);
      }
      yield* emitPreview(rgb, segment.keepCount);
      progress.windowDone(k, framesDone);
    }

    // ---- stage 3: enhancement ----
    if (o.enhance === false) return;
    where.stage = 'stage3';
    where.window = 0;
    await placeForStage(models, memory.placement?.stage3, device);
    await releaseCachedMemory(device, memory);
    yield* enhance(models, o, {
      frames: o.numFrames,
      width,
      height,
      preview: async (from, count) =>
        keepPreview !== undefined ? keepPreview.subarray(from * frameBytes, (from + count) * frameBytes) : store!.readPreview(from, count, width, height),
      seeds,
      progress,
      splitCfg: memory.splitCfg.stage3,
    });
  } catch (error) {
    if (!hasErrorCode(error, 'ERR_OUT_OF_MEMORY')) throw error;
    // Stage 3 runs over the whole video at once: it reports window 0.
    const saved = store === undefined ? '' : '; the state directory keeps every window saved so far: rerun with the same stateDir to resume';
    throw new OutOfMemoryError(`Out of memory on ${device} in ${where.stage} window ${where.window} (${framesDone} preview frames done${saved}): ${error.message}`, {
      cause: error,
      device,
      stage: where.stage,
      window: where.window,
      ...(error.nativeCall === undefined ? {} : { nativeCall: error.nativeCall }),
    });
  } finally {
    shortTerm.dispose();
    longTerm?.dispose();
    scope.dispose();
  }

  async function persist(s: RunStateStore, k: string, next: number, done: number): Promise<void> {
    const memory = (await shortTerm.serialize()).frames!;
    const anchor = await serializeTensor(longTerm!.anchor);
    await s.save(
      {
        key: k,
        nextWindow: next,
        framesDone: done,
        width,
        height,
        generator: Buffer.from(await gen2.getState()).toString('base64'),
        memoryShape: [...memory.shape],
        anchorShape: [...anchor.shape],
      },
      memory.data,
      anchor.data,
    );
  }
}

interface EnhanceInput {
  frames: number;
  width: number;
  height: number;
  preview: (from: number, count: number) => Promise<Uint8Array>;
  seeds: ReturnType<typeof derivedSeeds>;
  progress: ProgressTracker;
  splitCfg: boolean;
}

/** Stage 3 over all preview frames; yields final frames per decoded batch. */
async function* enhance(models: PipelineModels, o: ResolvedGenerateOptions, input: EnhanceInput): AsyncGenerator<GeneratedFrame, void, undefined> {
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
