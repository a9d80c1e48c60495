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
import { setNumThreads, setTf32 } from '../device.js';
import type { DType } from '../tensor.js';
import { readManifest } from '../models/manifest.js';
import { COMPONENT_ROLES } from '../models/manifest-types.js';
import { generateFrames } from './generate-frames.js';
import { formatBytes, memoryPlanInputFromManifest, planMemory, runMemorySettings, type MemoryPlan } from './memory-plan.js';
import { defaultModelDir, loadPipelineModels, pipelineRoles, type LoadedModels } from './model-adapter.js';
import type { ComponentRole, StageDefaults } from './models.js';
import { initialDevices } from './placement.js';
import { checkComponentDtypes, COMPUTE_DTYPES, resolveComponentDtypes } from './precision.js';
import { intOption, checkKeys, invalid, resolveGenerateOptions, type GenerateOptions } from './options.js';
import type { GeneratedFrame } from './types.js';
import { deliverWarning, vocabularyWarning } from './vocabulary.js';

/** Options of {@link StreamingT2VPipeline.load}. */
export interface PipelineLoadOptions {
  /** Model directory (holding manifest.json). Default: the model embedded in the package (`models/default`, see `defaultModelDir()`). */
  modelDir?: string;
  /** 'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'. Default 'auto'. */
  device?: string;
  /**
   * Run every network in this dtype ('float32', 'float16', 'bfloat16'). Default: on CUDA the manifest's
   * official compute dtypes (`defaults.precision`: stage 1 and the enhancer UNet float16, stage 2 and the
   * enhancer VAE float32), on the CPU float32 (float16 is refused on the CPU; bfloat16 works). Latents,
   * sampler state and frames stay float32 whatever the networks run in. See `dtypes` for per-component choices.
   */
  dtype?: DType;
  /**
   * Per-component dtype, winning over `dtype` for that component (roles as in the manifest, e.g.
   * `unet_stage2`, `enhancer_vae_decoder`). Default: none.
   * Example: `{ unet_stage2: 'float16' }` to run stage 2 in half precision on a GPU.
   */
  dtypes?: Partial<Record<ComponentRole, DType>>;
  /**
   * On CUDA, let float32 matmuls and convolutions use TF32 tensor cores (`setTf32`; process-wide, it stays
   * set after the pipeline is disposed). Default true on CUDA (faster float32 stages on Ampere and later GPUs,
   * with a 10-bit mantissa inside those products); no effect on the CPU. Pass false for full float32 products.
   */
  tf32?: boolean;
  /**
   * Freeze every network at load (`torch.jit.freeze`: weights become graph constants, attribute lookups and
   * dead code go away). Measured on the CPU with the tiny networks (`bench/freeze.mjs`): a stage-2 UNet call takes
   * 0.90-0.98x, an enhancer UNet call 0.80-0.99x the time, same results within float rounding; but freezing costs
   * time at load (models/default: +5 s for stages 1-2, +7-8 s with the enhancer), so it pays off for long videos
   * (240 frames) and not for short ones (48 frames). A frozen network cannot move between devices, so a
   * `vramBudget` plan that offloads refuses `freeze: true`. Default false.
   */
  freeze?: boolean;
  /** libtorch intra-op threads (CPU). Default: all cores. */
  threads?: number;
  /** Check every file's sha256 against the manifest at load. Default true. */
  verifyChecksums?: boolean;
  /** Load the stage-3 enhancer components. Default true (set false to save memory when never enhancing). */
  loadEnhancer?: boolean;
  /** Runs admitted at the same time on this pipeline (FIFO queue). Default 1. */
  maxConcurrentRuns?: number;
  /**
   * Device memory (bytes) one run may use. When set, `load` plans memory from the manifest before
   * loading anything (lib/pipeline/memory-plan.ts): which components stay resident, which would wait on
   * the CPU between stages, which stages split their CFG batch into two calls, how many frames each
   * stage-3 VAE call takes, and the estimated peak of every stage (see {@link StreamingT2VPipeline.memoryPlan}).
   * A budget that even the most frugal plan exceeds throws `InvalidArgumentError` naming the smallest
   * that would do. Activations are conservative estimates, weights the files' sizes. On CPU the budget
   * applies to the plan only: it is computed and applied the same way (the CFG split gives the same
   * frames), but no device memory is guarded (cap CPU tensors with `setCpuMemoryLimit`). The plan is
   * for one run at a time: with `maxConcurrentRuns` > 1 each admitted run needs its own activations, and a
   * plan that offloads components between stages (policy 'per-stage') requires `maxConcurrentRuns: 1` on CUDA.
   * Default: undefined (no planning). Example: `24 * 2 ** 30` for a 24 GiB GPU.
   */
  vramBudget?: number;
}

function boolOption(value: unknown, option: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') invalid('a boolean', option, value);
  return value;
}

/** The keys of {@link PipelineLoadOptions}. @internal */
export const LOAD_OPTION_KEYS: readonly string[] = ['modelDir', 'device', 'dtype', 'dtypes', 'tf32', 'freeze', 'threads', 'verifyChecksums', 'loadEnhancer', 'maxConcurrentRuns', 'vramBudget'];

/** Before any model is loaded: each component's compute dtype and the memory plan of `options.vramBudget`, from the manifest. */
async function prepare(options: PipelineLoadOptions, device: string, loadEnhancer: boolean): Promise<{ dtypes: Record<ComponentRole, DType>; plan: MemoryPlan | undefined }> {
  if (options.modelDir !== undefined && (typeof options.modelDir !== 'string' || options.modelDir.length === 0)) invalid('a directory path', 'modelDir', options.modelDir);
  if (options.dtype !== undefined && !COMPUTE_DTYPES.includes(options.dtype)) invalid(`one of ${COMPUTE_DTYPES.join(', ')}`, 'dtype', options.dtype);
  const overrides = checkComponentDtypes(options.dtypes);
  const budget = options.vramBudget === undefined ? undefined : intOption(options.vramBudget, 'vramBudget', 0, 1);
  const roles = pipelineRoles(loadEnhancer);
  const manifest = await readManifest(options.modelDir ?? defaultModelDir(), { verifyHashes: false, requiredRoles: roles });
  const dtypes = resolveComponentDtypes(manifest, device, roles, { dtype: options.dtype, dtypes: overrides });
  const plan = budget === undefined ? undefined : planMemory(memoryPlanInputFromManifest(manifest, { budget, dtypes, enhancer: loadEnhancer }));
  return { dtypes, plan };
}

/** Makes the plan's stage-3 VAE frames per call the default `encodeBatch`/`decodeBatch` (explicit values win). @internal */
export function withPlannedBatches(options: GenerateOptions, plan: MemoryPlan | undefined): GenerateOptions {
  const frames = plan?.stages.stage3?.vaeFramesPerCall;
  if (frames === undefined || options === null || typeof options !== 'object') return options;
  const e = options.enhance;
  if (e === false || (e !== undefined && e !== true && (e === null || typeof e !== 'object' || Array.isArray(e)))) return options;
  return { ...options, enhance: { encodeBatch: frames, decodeBatch: frames, ...(typeof e === 'object' ? e : {}) } };
}

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
  readonly #plan: MemoryPlan | undefined;
  readonly #limit: number;
  readonly #waiting: (() => void)[] = [];
  readonly #controllers = new Set<AbortController>();
  #active = 0;
  #disposed = false;

  private constructor(models: LoadedModels, limit: number, plan: MemoryPlan | undefined) {
    this.#models = models;
    this.#limit = limit;
    this.#plan = plan;
  }

  /** Loads (and validates) a model directory. */
  static async load(options: PipelineLoadOptions = {}): Promise<StreamingT2VPipeline> {
    if (options === null || typeof options !== 'object') invalid('an options object', 'options', options);
    checkKeys(options, LOAD_OPTION_KEYS, '');
    const device = resolveDevice(options.device);
    if (options.threads !== undefined) setNumThreads(intOption(options.threads, 'threads', 1, 1, 1024));
    const limit = intOption(options.maxConcurrentRuns, 'maxConcurrentRuns', 1, 1, 64);
    const loadEnhancer = boolOption(options.loadEnhancer, 'loadEnhancer', true);
    const tf32 = boolOption(options.tf32, 'tf32', true);
    const { dtypes, plan } = await prepare(options, device, loadEnhancer);
    if (device.startsWith('cuda')) setTf32(tf32);
    const placement = runMemorySettings(plan).placement;
    if (placement !== undefined && device !== 'cpu' && limit > 1) {
      invalid(`1 under a \`vramBudget\` that offloads components between stages (runs at different stages would move each other's weights)`, 'maxConcurrentRuns', limit);
    }
    const offloads = placement !== undefined && device !== 'cpu';
    const freeze = boolOption(options.freeze, 'freeze', false);
    if (freeze && offloads) {
      invalid('false under a `vramBudget` that offloads components between stages (frozen networks cannot move between devices)', 'freeze', freeze);
    }
    const devices = initialDevices(placement?.stage1, device);
    const models = await loadPipelineModels({
      ...(options.modelDir === undefined ? {} : { modelDir: options.modelDir }),
      device,
      dtypes,
      freeze,
      ...(devices === undefined ? {} : { devices }),
      verifyChecksums: boolOption(options.verifyChecksums, 'verifyChecksums', true),
      loadEnhancer,
    });
    return new StreamingT2VPipeline(models, limit, plan);
  }

  /** Device the networks run on. */
  get device(): string {
    return this.#models.device;
  }
  /** The model directory's defaults (steps, guidance, sizes, chunking). */
  get defaults(): StageDefaults {
    return this.#models.defaults;
  }
  /**
   * Where each loaded network is now and the dtype of its weights. Example (CUDA, default precision, a
   * `vramBudget` that offloads): `{ unet_stage1: { device: 'cuda:0', dtype: 'float16' }, unet_stage2:
   * { device: 'cpu', dtype: 'float32' }, … }` after load; a per-stage plan moves them as stages start.
   */
  get components(): Partial<Record<ComponentRole, { device: string; dtype: DType | null }>> {
    this.#ensure();
    return Object.fromEntries(
      COMPONENT_ROLES.filter((r) => this.#models.has(r)).map((r) => {
        const m = this.#models.module(r);
        return [r, { device: m.device, dtype: m.dtype }];
      }),
    );
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
   * The memory plan made at load for `vramBudget` (undefined without one): per stage the resident and
   * offloaded components, the CFG split, the VAE frames per call and the estimated peak; `describe()`
   * gives a printable report. Runs apply the CFG split, the stage-3 VAE frames per call (as the default
   * `encodeBatch`/`decodeBatch`) and, on CUDA, release cached memory between stages, and refuse enhanced
   * videos longer than `maxEnhancedFrames`. Under the 'per-stage' policy on CUDA, the components a stage
   * does not call wait on the CPU while it runs (`TorchModule.moveTo`; only stage 1's are on the device after
   * load). On CPU the budget applies to the plan only.
   *
   * @example
   * ```ts
   * const pipe = await StreamingT2VPipeline.load({ vramBudget: 24 * 2 ** 30 });
   * console.log(pipe.memoryPlan?.describe());
   * ```
   */
  get memoryPlan(): MemoryPlan | undefined {
    return this.#plan;
  }

  /**
   * Generates a video and yields its frames as soon as they exist: preview frames (stages 1–2) in
   * order, then the enhanced frames (stage 3) unless `enhance: false`. Stops (and frees everything)
   * when the consumer stops iterating, on abort (rejecting with `signal.reason`) or on error.
   */
  async *generate(options: GenerateOptions): AsyncGenerator<GeneratedFrame, void, undefined> {
    this.#ensure();
    const plan = this.#plan;
    const resolved = resolveGenerateOptions(withPlannedBatches(options, plan), this.#models.defaults, this.#models.key);
    if (resolved.enhance !== false && !this.#models.hasEnhancer) {
      throw new InvalidArgumentError('Expected `enhance: false` for a pipeline loaded with `loadEnhancer: false` but received enhancement options');
    }
    if (plan !== undefined && resolved.enhance !== false && resolved.numFrames > plan.maxEnhancedFrames) {
      const why = `stage 3 keeps the whole video's latents on the device, about ${formatBytes(plan.stage3BytesPerFrame)} per frame; raise \`vramBudget\` or pass \`enhance: false\``;
      invalid(`at most ${plan.maxEnhancedFrames} frames when enhancing under \`vramBudget\` ${plan.budget} (${why})`, 'numFrames', resolved.numFrames);
    }
    const warning = vocabularyWarning(resolved.prompt, resolved.negativePrompt, this.#models.promptWords, this.#models.name);
    if (warning !== undefined) deliverWarning(warning, resolved.onWarning);
    const controller = new AbortController();
    const user = resolved.signal;
    const onAbort = () => controller.abort(user?.reason);
    user?.addEventListener('abort', onAbort, { once: true });
    if (user?.aborted) controller.abort(user.reason);
    this.#controllers.add(controller);
    try {
      await this.#admit(controller.signal);
      try {
        yield* generateFrames(this.#models, { ...resolved, signal: controller.signal }, runMemorySettings(plan));
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
