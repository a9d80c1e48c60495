/**
 * generateLongVideo(): the one-call API. Loads a pipeline (or borrows one), runs it, and writes
 * the frames as they come to MP4 files (fragmented, so a cut file stays playable), a PNG
 * sequence, a raw file and/or a user sink. The streaming form is {@link streamLongVideo}.
 *
 * @example
 * ```ts
 * const result = await generateLongVideo({
 *   prompt: 'a red circle bouncing to the right on a blue background',
 *   numFrames: 240,
 *   output: 'out/video.mp4',          // final (enhanced); the preview goes to out/video.preview.mp4
 *   onProgress: (e) => console.log(e.phase, Math.round(e.fraction * 100), '%'),
 * });
 * ```
 */
import { basename, dirname, extname, join } from 'node:path';
import { mkdir } from 'node:fs/promises';

import { InvalidArgumentError } from '../errors.js';
import { readManifest } from '../models/manifest.js';
import { FanoutSink, Mp4Sink, PngSequenceSink, locateFfmpeg, type FrameSink } from '../video/index.js';
import { defaultModelDir, stageDefaults } from './model-adapter.js';
import { RUN_OPTION_KEYS, checkKeys, intOption, invalid, numberOption, resolveGenerateOptions, type GenerateOptions } from './options.js';
import { LOAD_OPTION_KEYS, StreamingT2VPipeline, type PipelineLoadOptions } from './pipeline.js';
import { readAhead } from './read-ahead.js';
import type { FrameStage, GeneratedFrame } from './types.js';

/** Options of {@link generateLongVideo}: the run, the model, and where the frames go. */
export interface LongVideoOptions extends GenerateOptions, PipelineLoadOptions {
  /**
   * MP4 path of the result: the enhanced video, or the preview when `enhance` is false. Default none.
   * Example: 'out/video.mp4'.
   */
  output?: string;
  /** MP4 path of the stage-2 preview. Default: `<output>.preview.mp4` when enhancing, none otherwise. */
  previewOutput?: string;
  /** Also write every frame as PNG into `<pngDir>/preview` and `<pngDir>/final`. Default none. */
  pngDir?: string;
  /**
   * Receives every frame (after the files). Awaited: generation runs at most `readAhead` frames ahead of it,
   * so a consistently slow `onFrame` still slows generation down. Default none.
   */
  onFrame?: (frame: GeneratedFrame) => void | Promise<void>;
  /** Frames per second of the MP4 files. Default: the manifest's (official 8). */
  fps?: number;
  /** ffmpeg binary. Default: `STREAMINGT2V_FFMPEG`, then `ffmpeg` on PATH. */
  ffmpegPath?: string;
  /** Use this loaded pipeline instead of loading one (it is not disposed). Default none. */
  pipeline?: StreamingT2VPipeline;
  /**
   * Frames buffered between generation and the outputs (an integer in [0, 4096]), so that writing
   * (ffmpeg pipes, PNG encoding, `onFrame`) overlaps with the networks making the next frames instead
   * of taking turns with them (lib/pipeline/read-ahead.ts). The run may be up to this many frames ahead
   * of the files; RAM grows by at most this many frames (a 1280×720 final frame is 2.6 MiB). On abort
   * or a source error the frames already generated are still written first; when a sink or `onFrame`
   * fails, the run is aborted at its next network call and nothing more is generated. 0 turns it off
   * (generation pauses while each frame is written). Default 8 (one stage-2 window's new frames).
   * Example: `readAhead: 24` to absorb a slow `onFrame` upload.
   */
  readAhead?: number;
}

/** What {@link generateLongVideo} wrote. */
export interface LongVideoResult {
  /** Frames per stage that were produced. */
  frames: { preview: number; final: number };
  /** Files written (MP4 paths, PNG directories). */
  files: string[];
  /** Wall time in seconds. */
  seconds: number;
  /** Device used. */
  device: string;
  /** The memory plan's report (`pipeline.memoryPlan.describe()`) when a `vramBudget` was given. */
  memoryPlan?: string;
}

const OUTPUT_KEYS = ['output', 'previewOutput', 'pngDir', 'onFrame', 'fps', 'ffmpegPath', 'pipeline', 'readAhead'];
/** Default of `readAhead`: one stage-2 window's new frames. */
export const DEFAULT_READ_AHEAD = 8;
const MAX_READ_AHEAD = 4096;
const LOAD_KEYS = LOAD_OPTION_KEYS;
const RUN_KEYS = RUN_OPTION_KEYS;

function split(options: LongVideoOptions): { run: GenerateOptions; load: PipelineLoadOptions } {
  const run: Record<string, unknown> = {};
  const load: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) {
    if (RUN_KEYS.includes(k)) run[k] = v;
    else if (LOAD_KEYS.includes(k)) load[k] = v;
  }
  return { run: run as unknown as GenerateOptions, load: load as PipelineLoadOptions };
}

function previewPathFor(output: string): string {
  const ext = extname(output);
  return join(dirname(output), `${basename(output, ext)}.preview${ext || '.mp4'}`);
}

/** Builds the file sinks for the options (none when no output is asked for). */
async function buildSinks(options: LongVideoOptions, enhancing: boolean, fps: number): Promise<{ sinks: FrameSink[]; files: string[] }> {
  const sinks: FrameSink[] = [];
  const files: string[] = [];
  const mp4 = async (path: string, stage: FrameStage) => {
    await mkdir(dirname(path), { recursive: true });
    sinks.push(new Mp4Sink({ path, stage, fps, ...(options.ffmpegPath === undefined ? {} : { ffmpegPath: options.ffmpegPath }) }));
    files.push(path);
  };
  if (options.output !== undefined) await mp4(options.output, enhancing ? 'final' : 'preview');
  const preview = options.previewOutput ?? (enhancing && options.output !== undefined ? previewPathFor(options.output) : undefined);
  if (preview !== undefined) await mp4(preview, 'preview');
  if (options.pngDir !== undefined) {
    for (const stage of enhancing ? (['preview', 'final'] as const) : (['preview'] as const)) {
      sinks.push(new PngSequenceSink({ dir: join(options.pngDir, stage), stage }));
      files.push(join(options.pngDir, stage));
    }
  }
  return { sinks, files };
}

/**
 * Generates a long video and writes it. On abort or error the files written so far stay valid
 * (fragmented MP4s are playable up to their last fragment; PNGs are complete files) and the
 * promise rejects with the reason.
 */
export async function generateLongVideo(options: LongVideoOptions): Promise<LongVideoResult> {
  if (options === null || typeof options !== 'object') invalid('an options object', 'options', options);
  checkKeys(options, [...RUN_KEYS, ...LOAD_KEYS, ...OUTPUT_KEYS], '');
  for (const key of ['output', 'previewOutput', 'pngDir', 'ffmpegPath'] as const) {
    const v = options[key];
    if (v !== undefined && (typeof v !== 'string' || v.length === 0)) invalid('a non-empty path', key, v);
  }
  if (options.onFrame !== undefined && typeof options.onFrame !== 'function') invalid('a function', 'onFrame', options.onFrame);
  if (options.pipeline !== undefined && !(options.pipeline instanceof StreamingT2VPipeline)) invalid('a StreamingT2VPipeline', 'pipeline', options.pipeline);
  const { run, load } = split(options);
  // Everything is validated before any model loads, any native call runs or any file is created.
  if (options.pipeline !== undefined) {
    for (const [key, value] of Object.entries(load)) {
      if (value !== undefined) invalid('no pipeline-loading option when `pipeline` is given (it is already loaded)', key, value);
    }
  }
  if (load.modelDir !== undefined && (typeof load.modelDir !== 'string' || load.modelDir.length === 0)) invalid('a directory path', 'modelDir', load.modelDir);
  const defaults = options.pipeline?.defaults ?? stageDefaults(await readManifest(load.modelDir ?? defaultModelDir(), { verifyHashes: false }));
  resolveGenerateOptions(run, defaults, '');
  const fps = numberOption(options.fps, 'fps', defaults.fps, 0.1, 1000);
  const ahead = intOption(options.readAhead, 'readAhead', DEFAULT_READ_AHEAD, 0, MAX_READ_AHEAD);
  const enhancing = run.enhance !== false;
  if (enhancing && options.pipeline === undefined && load.loadEnhancer === false) {
    throw new InvalidArgumentError('Expected `enhance: false` for a pipeline loaded with `loadEnhancer: false` but received enhancement options');
  }
  if (options.output !== undefined || options.previewOutput !== undefined) {
    await locateFfmpeg(options.ffmpegPath === undefined ? {} : { ffmpegPath: options.ffmpegPath });
  }
  const started = performance.now();
  const pipeline = options.pipeline ?? (await StreamingT2VPipeline.load(load));
  const counts = { preview: 0, final: 0 };
  let sink: FanoutSink | undefined;
  let files: string[] = [];
  try {
    const built = await buildSinks(options, enhancing, fps);
    files = built.files;
    sink = built.sinks.length > 0 ? new FanoutSink(built.sinks) : undefined;
    for await (const frame of framesAhead(pipeline, run, ahead)) {
      await sink?.write(frame);
      if (options.onFrame !== undefined) await options.onFrame(frame);
      counts[frame.stage]++;
    }
    await sink?.close();
  } catch (error) {
    await sink?.abort();
    throw error;
  } finally {
    if (options.pipeline === undefined) pipeline.dispose();
  }
  if (counts.preview === 0) throw new InvalidArgumentError('The run produced no frames');
  const plan = pipeline.memoryPlan;
  return { frames: counts, files, seconds: (performance.now() - started) / 1000, device: pipeline.device, ...(plan === undefined ? {} : { memoryPlan: plan.describe() }) };
}

/**
 * The run's frames through a read-ahead of `capacity` frames. With a read-ahead, the run gets its
 * own AbortController (following the user's signal) so that a consumer that stops early (a failed
 * sink) aborts the window in flight instead of waiting for frames nobody will read.
 */
function framesAhead(pipeline: StreamingT2VPipeline, run: GenerateOptions, capacity: number): AsyncGenerator<GeneratedFrame, void, undefined> {
  if (capacity === 0) return pipeline.generate(run);
  if (run.signal !== undefined && !(run.signal instanceof AbortSignal)) invalid('an AbortSignal', 'signal', run.signal);
  return (async function* () {
    const stop = new AbortController();
    const user = run.signal;
    const follow = () => stop.abort(user?.reason);
    user?.addEventListener('abort', follow, { once: true });
    if (user?.aborted) follow();
    try {
      const frames = pipeline.generate({ ...run, signal: stop.signal });
      yield* readAhead(frames, { capacity, onEarlyStop: () => stop.abort(new Error('The frame consumer stopped')) });
    } finally {
      user?.removeEventListener('abort', follow);
    }
  })();
}

/** Options of {@link streamLongVideo}: the run, the model, and an optional read-ahead. */
export interface StreamLongVideoOptions extends GenerateOptions, PipelineLoadOptions {
  /**
   * Frames generated ahead of the consumer (an integer in [0, 4096]); see {@link LongVideoOptions.readAhead}.
   * Default 0: strict backpressure, the run pauses while the consumer is busy, so a stream consumer
   * (e.g. a network client) controls exactly how much is generated and held. Example: `readAhead: 8`.
   */
  readAhead?: number;
}

/**
 * The streaming form: loads a pipeline, yields frames as they are made (backpressure: the run
 * pauses while the consumer is busy, unless `readAhead` lets it run ahead), and disposes the
 * pipeline when iteration ends.
 *
 * @example
 * ```ts
 * for await (const frame of streamLongVideo({ prompt, numFrames: 1200, enhance: false })) send(frame);
 * ```
 */
export async function* streamLongVideo(options: StreamLongVideoOptions): AsyncGenerator<GeneratedFrame, void, undefined> {
  if (options === null || typeof options !== 'object') invalid('an options object', 'options', options);
  checkKeys(options, [...RUN_KEYS, ...LOAD_KEYS, 'readAhead'], '');
  const ahead = intOption(options.readAhead, 'readAhead', 0, 0, MAX_READ_AHEAD);
  const { run, load } = split(options as LongVideoOptions);
  const pipeline = await StreamingT2VPipeline.load(load);
  try {
    yield* framesAhead(pipeline, run, ahead);
  } finally {
    pipeline.dispose();
  }
}
