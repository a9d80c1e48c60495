/**
 * StreamingT2VPipeline: load the models of a model directory once, then generate many videos
 * (a server's long-lived object). `generate()` is an async generator of frames with backpressure.
 *
 * Scheduling: runs on one pipeline are admitted FIFO, `maxConcurrentRuns` at a time (default 1),
 * so memory stays predictable; waiting runs start in call order. Results never depend on the
 * scheduling: every run owns its generators and memories.
 *
 * @example
 * ```ts
 * await using pipe = await StreamingT2VPipeline.load({ device: 'auto' });
 * for await (const frame of pipe.generate({ prompt: 'a red circle bouncing', numFrames: 240 })) {
 *   if (frame.stage === 'final') await writer.write(frame.data);
 * }
 * ```
 */
import { cudaAvailable } from '../device.js';
import { DisposedError, InvalidArgumentError } from '../errors.js';
import { setNumThreads } from '../device.js';
import type { DType } from '../tensor.js';
import { generateFrames } from './generate-frames.js';
import { loadPipelineModels, type LoadedModels } from './model-adapter.js';
import type { StageDefaults } from './models.js';
import { intOption, checkKeys, invalid, resolveGenerateOptions, type GenerateOptions } from './options.js';
import type { GeneratedFrame } from './types.js';

/** Options of {@link StreamingT2VPipeline.load}. */
export interface PipelineLoadOptions {
  /** Model directory (holding manifest.json). Default: the model embedded in the package (`models/default`, see `defaultModelDir()`). */
  modelDir?: string;
  /** 'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'. Default 'auto'. */
  device?: string;
  /** Cast the networks to this dtype. Default: float32 (the official stage 2 runs in fp32). */
  dtype?: DType;
  /** libtorch intra-op threads (CPU). Default: all cores. */
  threads?: number;
  /** Check every file's sha256 against the manifest at load. Default true. */
  verifyChecksums?: boolean;
  /** Load the stage-3 enhancer components. Default true (set false to save memory when never enhancing). */
  loadEnhancer?: boolean;
  /** Runs admitted at the same time on this pipeline (FIFO queue). Default 1. */
  maxConcurrentRuns?: number;
}

function boolOption(value: unknown, option: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') invalid('a boolean', option, value);
  return value;
}

/** The keys of {@link PipelineLoadOptions}. @internal */
export const LOAD_OPTION_KEYS: readonly string[] = ['modelDir', 'device', 'dtype', 'threads', 'verifyChecksums', 'loadEnhancer', 'maxConcurrentRuns'];

/** Resolves 'auto' and validates a device string. */
export function resolveDevice(device: string | undefined): string {
  const d = device ?? 'auto';
  if (typeof d !== 'string') invalid("'auto', 'cpu', 'cuda' or 'cuda:N'", 'device', d);
  if (d === 'auto') return cudaAvailable() ? 'cuda:0' : 'cpu';
  if (d === 'cpu') return 'cpu';
  if (/^cuda(:\d+)?$/.test(d)) {
    if (!cudaAvailable()) {
      throw new InvalidArgumentError(`Expected an available device for \`device\` but received "${d}": this libtorch build has no usable CUDA device (use 'cpu' or 'auto')`);
    }
    return d === 'cuda' ? 'cuda:0' : d;
  }
  return invalid("'auto', 'cpu', 'cuda' or 'cuda:N'", 'device', d);
}

export class StreamingT2VPipeline implements AsyncDisposable {
  readonly #models: LoadedModels;
  readonly #limit: number;
  readonly #waiting: (() => void)[] = [];
  readonly #controllers = new Set<AbortController>();
  #active = 0;
  #disposed = false;

  private constructor(models: LoadedModels, limit: number) {
    this.#models = models;
    this.#limit = limit;
  }

  /** Loads (and validates) a model directory. */
  static async load(options: PipelineLoadOptions = {}): Promise<StreamingT2VPipeline> {
    if (options === null || typeof options !== 'object') invalid('an options object', 'options', options);
    checkKeys(options, LOAD_OPTION_KEYS, '');
    const device = resolveDevice(options.device);
    if (options.threads !== undefined) setNumThreads(intOption(options.threads, 'threads', 1, 1, 1024));
    const limit = intOption(options.maxConcurrentRuns, 'maxConcurrentRuns', 1, 1, 64);
    const models = await loadPipelineModels({
      ...(options.modelDir === undefined ? {} : { modelDir: options.modelDir }),
      device,
      ...(options.dtype === undefined ? {} : { dtype: options.dtype }),
      verifyChecksums: boolOption(options.verifyChecksums, 'verifyChecksums', true),
      loadEnhancer: boolOption(options.loadEnhancer, 'loadEnhancer', true),
    });
    return new StreamingT2VPipeline(models, limit);
  }

  /** Device the networks run on. */
  get device(): string {
    return this.#models.device;
  }
  /** The model directory's defaults (steps, guidance, sizes, chunking). */
  get defaults(): StageDefaults {
    return this.#models.defaults;
  }
  /** The model directory this pipeline was loaded from. */
  get modelDir(): string {
    return this.#models.dir;
  }
  /** True once disposed. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /**
   * Generates a video and yields its frames as soon as they exist: preview frames (stages 1–2) in
   * order, then the enhanced frames (stage 3) unless `enhance: false`. Stops (and frees everything)
   * when the consumer stops iterating, on abort (rejecting with `signal.reason`) or on error.
   */
  async *generate(options: GenerateOptions): AsyncGenerator<GeneratedFrame, void, undefined> {
    this.#ensure();
    const resolved = resolveGenerateOptions(options, this.#models.defaults, this.#models.key);
    if (resolved.enhance !== false && !this.#models.hasEnhancer) {
      throw new InvalidArgumentError('Expected `enhance: false` for a pipeline loaded with `loadEnhancer: false` but received enhancement options');
    }
    const controller = new AbortController();
    const user = resolved.signal;
    const onAbort = () => controller.abort(user?.reason);
    user?.addEventListener('abort', onAbort, { once: true });
    if (user?.aborted) controller.abort(user.reason);
    this.#controllers.add(controller);
    try {
      await this.#admit(controller.signal);
      try {
        yield* generateFrames(this.#models, { ...resolved, signal: controller.signal });
      } finally {
        this.#release();
      }
    } finally {
      this.#controllers.delete(controller);
      user?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Releases every model. Runs in progress are aborted (they reject with a DisposedError); a
   * network call in flight finishes natively first. Idempotent.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const c of this.#controllers) c.abort(new DisposedError('StreamingT2VPipeline'));
    for (const wake of this.#waiting.splice(0)) wake();
    this.#models.dispose();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  #ensure(): void {
    if (this.#disposed) throw new DisposedError('StreamingT2VPipeline');
  }

  async #admit(signal: AbortSignal): Promise<void> {
    while (this.#active >= this.#limit) {
      signal.throwIfAborted();
      await new Promise<void>((resolve) => {
        this.#waiting.push(resolve);
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
      this.#ensure();
    }
    signal.throwIfAborted();
    this.#ensure();
    this.#active++;
  }

  #release(): void {
    this.#active--;
    this.#waiting.shift()?.();
  }
}
