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
import { frameViews, scoreSeam, type SeamScore } from './cut-guard.js';
import { planStage2Windows } from './chunk-plan.js';
import { enhance } from './enhance-run.js';
import { LongTermMemory, ShortTermMemory, serializeTensor } from './memory.js';
import { NO_MEMORY_PLAN, type RunMemorySettings } from './memory-plan.js';
import { placeForStage } from './placement.js';
import type { PipelineModels } from './models.js';
import { ProgressTracker } from './progress.js';
import type { ResolvedGenerateOptions } from './options.js';
import { RunStateStore, runKey } from './run-state.js';
import { runStage1 } from './stage1.js';
import { derivedSeeds, stage1Seed } from './seeds.js';
import { runStage2Window, stage2Context } from './stage2.js';
import { encodeCfgPair } from './text.js';
import type { GeneratedFrame } from './types.js';

/** RGB bytes of `count` frames of a [1, 3, F, H, W] video from frame `from`. */
async function toRgb(video: Tensor, from: number, count: number): Promise<Uint8Array> {
  const part = await video.narrow(2, from, count);
  try {
    return await part.toRgbFrames();
  } finally {
    part.dispose();
  }
}

/** Stage 1's output and the memories made from it (one attempt of the run's start). */
interface Start {
  /** RGB bytes of the 16 frames. */
  rgb: Uint8Array;
  /** APM memory of its frame 0 (owned). */
  longTerm: LongTermMemory;
}

/** One sampled stage-2 window: the window (owned), its kept frames' RGB and, under the cut guard, its seam's score. */
interface Candidate {
  window: Tensor;
  rgb: Uint8Array;
  seam: SeamScore | undefined;
  /** At the handover: the stage-1 attempt it continues (owned with it). */
  start?: Start;
}

function disposeCandidate(c: Candidate | undefined): void {
  c?.window.dispose();
  c?.start?.longTerm.dispose();
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
    for (const data of frameViews(rgb, frameBytes, 0, count)) {
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
    let context: { memory: LongTermMemory; tokens: Tensor } | undefined; // the stage-2 context of one APM memory
    let lastShown: Uint8Array | undefined; // RGB of the last window accepted: the CAM frames, as shown

    /** Stage 1 with the attempt's seed: its 16 frames' RGB, the APM memory of its frame 0, the CAM memory of its last 8. */
    const runStart = async (attempt: number): Promise<Start> => {
      where.stage = 'stage1';
      where.window = 0;
      await placeForStage(models, memory.placement?.stage1, device);
      const video = await runStage1(models, {
        text,
        prompt: o.prompt,
        negativePrompt: o.negativePrompt,
        seed: stage1Seed(o.seed, attempt),
        steps: o.stage1.steps,
        guidance: o.stage1.guidance,
        splitCfg: memory.splitCfg.stage1,
        signal,
        onStep: (s) => progress.step('stage1', 0, s.index, s.total, attempt),
      });
      try {
        await placeForStage(models, memory.placement?.stage2, device);
        const lt = await LongTermMemory.fromVideo(video, encodeImage); // frame 0 of stage 1, forever (G4)
        try {
          await shortTerm.update(video);
          return { rgb: await video.toRgbFrames(), longTerm: lt };
        } catch (error) {
          lt.dispose();
          throw error;
        }
      } finally {
        video.dispose();
      }
    };

    /** One stage-2 window from the current CAM frames and `lt`; its kept frames' RGB and, under the guard, its seam's score. */
    const sampleWindow = async (k: number, attempt: number, lt: LongTermMemory, shown: readonly Uint8Array[]): Promise<Candidate> => {
      where.stage = 'stage2';
      where.window = k;
      if (context?.memory !== lt) {
        context?.tokens.dispose();
        context = undefined;
        context = { memory: lt, tokens: scope.track(await stage2Context(text, lt.uncondTokens, lt.condTokens)) };
      }
      const segment = plan.segments[k]!;
      const window = await runStage2Window(models, {
        context: context.tokens,
        condFrames: shortTerm.frames,
        generator: gen2,
        steps: o.stage2.steps,
        guidance: o.stage2.guidance,
        eta: o.stage2.eta,
        replaceOverlap: o.stage2.replaceOverlap,
        splitCfg: memory.splitCfg.stage2,
        signal,
        onStep: (s) => progress.step('stage2', k, s.index, s.total, attempt),
      });
      try {
        const rgb = await toRgb(window, segment.keepStart, segment.keepCount);
        return { window, rgb, seam: shown.length > 0 ? scoreSeam(shown, frameViews(rgb, frameBytes)) : undefined };
      } catch (error) {
        window.dispose();
        throw error;
      }
    };

    /** Takes window k into the CAM memory, persists the run and streams its new frames. */
    const accept = async function* (k: number, chosen: Candidate): AsyncGenerator<GeneratedFrame, void, undefined> {
      try {
        await shortTerm.update(chosen.window);
      } finally {
        chosen.window.dispose();
      }
      const segment = plan.segments[k]!;
      lastShown = o.stage2.cutRetries > 0 ? chosen.rgb.slice() : undefined; // a copy: a consumer may write into its frames
      if (store !== undefined) {
        await store.appendPreview(chosen.rgb);
        await persist(store, key, k + 1, framesDone + segment.keepCount);
      }
      yield* emitPreview(chosen.rgb, segment.keepCount);
      progress.windowDone(k, framesDone);
    };

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
      // ---- stage 1 (and, under the cut guard, window 1 with it: the handover) ----
      await store?.reset();
      let start = await runStart(0);
      let handover: Candidate | undefined;
      if (o.stage2.cutRetries > 0 && plan.windows >= 1) {
        // Stage 2 re-draws the stage-1 frames' look in its own, the same way for any noise, so a cut at the
        // handover is retried with a new stage 1 (and a new window 1), not with window 1 alone (lib/pipeline/cut-guard.ts).
        let best: (Candidate & { start: Start }) | undefined;
        try {
          for (let attempt = 0; ; attempt++) {
            const candidate = await sampleWindow(1, attempt, start.longTerm, frameViews(start.rgb, frameBytes));
            const seam = candidate.seam!;
            if (best === undefined || !seam.cut || seam.ratio < best.seam!.ratio) {
              disposeCandidate(best);
              best = { ...candidate, start };
            } else {
              candidate.window.dispose();
              start.longTerm.dispose();
            }
            if (!seam.cut || attempt === o.stage2.cutRetries) break;
            progress.retry(seam, true);
            start = await runStart(attempt + 1);
          }
        } catch (error) {
          if (best?.start !== start) start.longTerm.dispose();
          disposeCandidate(best);
          throw error;
        }
        start = best.start;
        handover = best;
      }
      longTerm = start.longTerm;
      try {
        const keep = plan.segments[0]!.keepCount;
        if (store !== undefined) await store.appendPreview(start.rgb.subarray(0, keep * frameBytes));
        if (store !== undefined && handover === undefined) await persist(store, key, 1, keep);
        yield* emitPreview(start.rgb, keep);
        progress.windowDone(0, framesDone);
        if (handover !== undefined) {
          yield* accept(1, handover);
          nextWindow = 2;
        }
      } finally {
        handover?.window.dispose(); // a consumer that stops during stage 1's frames
      }
    }

    // ---- stage 2: autoregressive windows ----
    await releaseCachedMemory(device, memory);
    for (let k = nextWindow; k <= plan.windows; k++) {
      signal?.throwIfAborted();
      where.stage = 'stage2';
      where.window = k;
      // The cut guard's left side: the last frames shown, as shown (the CAM frames' RGB bytes: the last accepted
      // window's, read back from the CAM memory only after a resume).
      const shown = o.stage2.cutRetries > 0 ? frameViews(lastShown ?? (await shortTerm.frames.toRgbFrames()), frameBytes) : [];
      let best: Candidate | undefined;
      try {
        for (let attempt = 0; ; attempt++) {
          const candidate = await sampleWindow(k, attempt, longTerm!, shown);
          const seam = candidate.seam;
          // Keep the first attempt that is not a cut, else the least cut-like one.
          if (best === undefined || seam === undefined || !seam.cut || seam.ratio < best.seam!.ratio) {
            disposeCandidate(best);
            best = candidate;
          } else {
            candidate.window.dispose();
          }
          if (seam === undefined || !seam.cut || attempt === o.stage2.cutRetries) break;
          progress.retry(seam, false);
        }
      } catch (error) {
        disposeCandidate(best);
        throw error;
      }
      yield* accept(k, best);
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
