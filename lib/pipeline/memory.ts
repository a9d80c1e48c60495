/**
 * The two conditioning memories of StreamingT2V stage 2, as objects that OWN their native tensors:
 *
 * - {@link ShortTermMemory} (CAM input, spec §1.5, §2, G4): the previous window's last F_cond = 8 DECODED frames
 *   in pixel space [-1, 1], [B, 3, 8, H, W]. Re-derived from pixels after every window; latents are never
 *   carried across windows (spec §10.1).
 * - {@link LongTermMemory} (APM input, spec §3, G5): the anchor = frame 0 of the stage-1 video, fixed for the whole
 *   video, and its image tokens for the conditional half plus the tokens of a grey image (zeros in [-1, 1]) for
 *   the unconditional half. The official code re-encodes both every window; the result is identical, so we
 *   encode ONCE through an injected encoder (the class does not depend on the model).
 *
 * Both serialise to Float32Array + shape (+ dtype) for resume and restore to equal tensors. Both throw
 * `DisposedError` when used after `dispose()`.
 *
 * @module
 */
import type { DType } from '../binding.js';
import { DisposedError, InvalidArgumentError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { DEFAULT_CONDITIONING_FRAMES } from './chunk-plan.js';

/** A tensor copied to JS for resume: float32 data, shape and the original dtype (restored on load). */
export interface SerializedTensor {
  /** Row-major values. */
  readonly data: Float32Array;
  /** Sizes of each dimension. */
  readonly shape: readonly number[];
  /** The dtype to restore (float16/bfloat16 round-trip exactly through float32). */
  readonly dtype: DType;
}

/**
 * Copies a tensor to a {@link SerializedTensor}.
 *
 * @example
 * ```ts
 * const saved = await serializeTensor(t); // { data: Float32Array, shape: [...], dtype: 'float32' }
 * ```
 */
export async function serializeTensor(t: Tensor): Promise<SerializedTensor> {
  return { data: await t.toFloat32Array(), shape: [...t.shape], dtype: t.dtype };
}

/**
 * Recreates a tensor from {@link serializeTensor} output on `device` (default `'cpu'`).
 *
 * @example
 * ```ts
 * using t = await restoreTensor(saved, 'cuda');
 * ```
 */
export async function restoreTensor(saved: SerializedTensor, device = 'cpu'): Promise<Tensor> {
  if (!(saved?.data instanceof Float32Array) || !Array.isArray(saved.shape)) {
    throw new InvalidArgumentError(`Expected a SerializedTensor for \`saved\` but received ${String(saved)}`);
  }
  const numel = saved.shape.reduce((a, b) => a * b, 1);
  if (numel !== saved.data.length) {
    throw new InvalidArgumentError(
      `Expected ${numel} values for shape [${saved.shape.join(', ')}] in \`saved.data\` but received ${saved.data.length}`,
    );
  }
  return Tensor.fromArray(saved.data, saved.shape, { device, dtype: saved.dtype });
}

function checkVideo(t: Tensor, option: string, minFrames: number): void {
  if (!(t instanceof Tensor)) throw new InvalidArgumentError(`Expected a Tensor for \`${option}\` but received ${String(t)}`);
  const s = t.shape;
  if (s.length !== 5 || s[1] !== 3 || s[2]! < minFrames) {
    throw new InvalidArgumentError(
      `Expected a [B, 3, F ≥ ${minFrames}, H, W] video for \`${option}\` but received [${s.join(', ')}]`,
    );
  }
}

// ---- short-term memory (CAM) -------------------------------------------------------------------

/** Options of {@link ShortTermMemory}. */
export interface ShortTermMemoryOptions {
  /** Frames kept, F_cond (`num_control_input_frames`). Default 8. */
  readonly conditioningFrames?: number | undefined;
}

/** The resume state of a {@link ShortTermMemory}. */
export interface ShortTermMemoryState {
  /** F_cond of the saved memory. */
  readonly conditioningFrames: number;
  /** The held frames, or null when nothing was stored yet. */
  readonly frames: SerializedTensor | null;
}

/**
 * CAM short-term memory: the last F_cond decoded frames of the previous window, [B, 3, F_cond, H, W] in [-1, 1].
 *
 * @example
 * ```ts
 * using stm = new ShortTermMemory();
 * await stm.update(stage1Video);          // [1,3,16,256,256] in [-1,1] → keeps frames 8..15
 * cam(..., stm.frames);                    // borrowed [1,3,8,256,256]
 * await stm.update(nextWindow);           // the old 8 frames are freed
 * ```
 */
export class ShortTermMemory implements Disposable {
  /** F_cond. */
  readonly conditioningFrames: number;
  #frames: Tensor | undefined;
  #disposed = false;

  constructor(options: ShortTermMemoryOptions = {}) {
    const f = options.conditioningFrames ?? DEFAULT_CONDITIONING_FRAMES;
    if (!Number.isInteger(f) || f < 1) {
      throw new InvalidArgumentError(`Expected an integer ≥ 1 for \`conditioningFrames\` but received ${String(f)}`);
    }
    this.conditioningFrames = f;
  }

  /** True once frames were stored. */
  get ready(): boolean {
    this.#ensure();
    return this.#frames !== undefined;
  }

  /** The held frames [B, 3, F_cond, H, W], BORROWED: valid until the next `update()` or `dispose()`. */
  get frames(): Tensor {
    this.#ensure();
    if (this.#frames === undefined) {
      throw new InvalidArgumentError('Expected a ShortTermMemory with frames for `frames` but received an empty memory (call update() first)');
    }
    return this.#frames;
  }

  /**
   * Stores the last F_cond frames of `windowFrames` [B, 3, F, H, W] (F ≥ F_cond; frames 8..15 of a 16-frame
   * window) as a copy, then frees the evicted frames. Borrows `windowFrames`.
   */
  async update(windowFrames: Tensor): Promise<void> {
    this.#ensure();
    checkVideo(windowFrames, 'windowFrames', this.conditioningFrames);
    const f = windowFrames.shape[2]!;
    const next = await windowFrames.narrow(2, f - this.conditioningFrames, this.conditioningFrames);
    if (this.#disposed) {
      next.dispose();
      throw new DisposedError('ShortTermMemory');
    }
    this.#frames?.dispose();
    this.#frames = next;
  }

  /** The resume state (a copy of the held frames). */
  async serialize(): Promise<ShortTermMemoryState> {
    this.#ensure();
    return {
      conditioningFrames: this.conditioningFrames,
      frames: this.#frames === undefined ? null : await serializeTensor(this.#frames),
    };
  }

  /** A memory equal to the serialised one, its frames on `device` (default `'cpu'`). */
  static async restore(state: ShortTermMemoryState, device = 'cpu'): Promise<ShortTermMemory> {
    const memory = new ShortTermMemory({ conditioningFrames: state.conditioningFrames });
    if (state.frames !== null) {
      const t = await restoreTensor(state.frames, device);
      if (t.shape.length !== 5 || t.shape[2] !== memory.conditioningFrames) {
        t.dispose();
        throw new InvalidArgumentError(
          `Expected [B, 3, ${memory.conditioningFrames}, H, W] for \`state.frames\` but received [${state.frames.shape.join(', ')}]`,
        );
      }
      memory.#frames = t;
    }
    return memory;
  }

  /** True once disposed. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Frees the held frames. Idempotent. */
  dispose(): void {
    this.#disposed = true;
    this.#frames?.dispose();
    this.#frames = undefined;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  #ensure(): void {
    if (this.#disposed) throw new DisposedError('ShortTermMemory');
  }
}

// ---- long-term memory (APM) --------------------------------------------------------------------

/**
 * The APM image encoder: images [N, 3, H, W] in [-1, 1] → tokens [N, …] (CLIP preprocess + pooled embedding +
 * resampler, spec §3; [N, 16, 1024] for the official model). Must not dispose its input; returns a new tensor.
 */
export type ImageEncoder = (image: Tensor) => Promise<Tensor>;

/** Options of {@link LongTermMemory.fromVideo} and {@link LongTermMemory.create}. */
export interface LongTermMemoryOptions {
  /**
   * Encode grey and anchor in ONE encoder call as a batch [grey; anchor] (2B images, unconditional first as
   * in the CFG batch) instead of two calls of B images. Default true. Use false for encoders exported with a
   * fixed batch size.
   */
  readonly batchEncode?: boolean | undefined;
}

/** The resume state of a {@link LongTermMemory}. */
export interface LongTermMemoryState {
  /** The anchor image [B, 3, H, W] in [-1, 1]. */
  readonly anchor: SerializedTensor;
  /** Anchor image tokens (conditional CFG half). */
  readonly condTokens: SerializedTensor;
  /** Grey image tokens (unconditional CFG half). */
  readonly uncondTokens: SerializedTensor;
}

/**
 * APM long-term memory: the fixed anchor frame and its image tokens (cond) plus grey-image tokens (uncond).
 *
 * @example
 * ```ts
 * using ltm = await LongTermMemory.fromVideo(stage1Video, (img) => apmEncoder.forward(img));
 * ltm.condTokens;   // [1,16,1024], appended after the prompt's 77 text tokens
 * ltm.uncondTokens; // [1,16,1024], appended after the negative prompt's tokens
 * ```
 */
export class LongTermMemory implements Disposable {
  #anchor: Tensor;
  #cond: Tensor;
  #uncond: Tensor;
  #disposed = false;

  private constructor(anchor: Tensor, cond: Tensor, uncond: Tensor) {
    this.#anchor = anchor;
    this.#cond = cond;
    this.#uncond = uncond;
  }

  /**
   * From the stage-1 video [B, 3, F, H, W] in [-1, 1]: anchor = frame 0 (spec §3 `conditioning_type="fixed"`).
   * Borrows `video`.
   */
  static async fromVideo(video: Tensor, encoder: ImageEncoder, options?: LongTermMemoryOptions): Promise<LongTermMemory> {
    checkVideo(video, 'video', 1);
    const [b, c, , h, w] = video.shape as [number, number, number, number, number];
    const frame0 = await video.narrow(2, 0, 1);
    let anchor: Tensor;
    try {
      anchor = await frame0.reshape([b, c, h, w]);
    } finally {
      frame0.dispose();
    }
    return LongTermMemory.#build(anchor, encoder, options);
  }

  /**
   * From an anchor image [B, 3, H, W] in [-1, 1] (copied; the caller keeps `anchor`).
   *
   * @example
   * ```ts
   * using ltm = await LongTermMemory.create(anchor, encodeImage, { batchEncode: false });
   * ```
   */
  static async create(anchor: Tensor, encoder: ImageEncoder, options?: LongTermMemoryOptions): Promise<LongTermMemory> {
    if (!(anchor instanceof Tensor) || anchor.shape.length !== 4 || anchor.shape[1] !== 3) {
      throw new InvalidArgumentError(`Expected a [B, 3, H, W] image for \`anchor\` but received ${anchor instanceof Tensor ? `[${anchor.shape.join(', ')}]` : String(anchor)}`);
    }
    return LongTermMemory.#build(await anchor.clone(), encoder, options);
  }

  /** Encodes once; takes ownership of `anchor` (disposed on failure). */
  static async #build(anchor: Tensor, encoder: ImageEncoder, options: LongTermMemoryOptions | undefined): Promise<LongTermMemory> {
    const temps: Tensor[] = [];
    let cond: Tensor | undefined;
    let uncond: Tensor | undefined;
    try {
      if (typeof encoder !== 'function') {
        throw new InvalidArgumentError(`Expected a function for \`encoder\` but received ${String(encoder)}`);
      }
      const b = anchor.shape[0]!;
      // G5: the unconditional image is zeros in [-1, 1] (mid-grey), not black.
      const grey = await Tensor.zeros(anchor.shape, { device: anchor.device, dtype: anchor.dtype });
      temps.push(grey);
      if (options?.batchEncode ?? true) {
        const batch = await Tensor.cat([grey, anchor], 0); // CFG order: unconditional first
        temps.push(batch);
        const tokens = await encode(encoder, batch, 2 * b);
        temps.push(tokens);
        uncond = await tokens.narrow(0, 0, b);
        cond = await tokens.narrow(0, b, b);
      } else {
        cond = await encode(encoder, anchor, b);
        uncond = await encode(encoder, grey, b);
      }
      return new LongTermMemory(anchor, cond, uncond);
    } catch (error) {
      anchor.dispose();
      cond?.dispose();
      uncond?.dispose();
      throw error;
    } finally {
      for (const t of temps) t.dispose();
    }
  }

  /** The anchor image [B, 3, H, W] in [-1, 1], BORROWED (valid until `dispose()`). */
  get anchor(): Tensor {
    this.#ensure();
    return this.#anchor;
  }
  /** Image tokens of the anchor for the conditional CFG half, BORROWED. */
  get condTokens(): Tensor {
    this.#ensure();
    return this.#cond;
  }
  /** Image tokens of the grey image for the unconditional CFG half, BORROWED. */
  get uncondTokens(): Tensor {
    this.#ensure();
    return this.#uncond;
  }

  /** The resume state (copies of the three tensors). */
  async serialize(): Promise<LongTermMemoryState> {
    this.#ensure();
    return {
      anchor: await serializeTensor(this.#anchor),
      condTokens: await serializeTensor(this.#cond),
      uncondTokens: await serializeTensor(this.#uncond),
    };
  }

  /** A memory equal to the serialised one on `device` (default `'cpu'`); no encoder call. */
  static async restore(state: LongTermMemoryState, device = 'cpu'): Promise<LongTermMemory> {
    const parts: Tensor[] = [];
    try {
      for (const s of [state.anchor, state.condTokens, state.uncondTokens]) parts.push(await restoreTensor(s, device));
    } catch (error) {
      for (const t of parts) t.dispose();
      throw error;
    }
    const [anchor, cond, uncond] = parts as [Tensor, Tensor, Tensor];
    return new LongTermMemory(anchor, cond, uncond);
  }

  /** True once disposed. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Frees the anchor and both token tensors. Idempotent. */
  dispose(): void {
    this.#disposed = true;
    this.#anchor.dispose();
    this.#cond.dispose();
    this.#uncond.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  #ensure(): void {
    if (this.#disposed) throw new DisposedError('LongTermMemory');
  }
}

/** Calls the encoder and checks its result: a NEW tensor with `batch` rows (an identity result is copied). */
async function encode(encoder: ImageEncoder, image: Tensor, batch: number): Promise<Tensor> {
  const out: unknown = await encoder(image);
  if (!(out instanceof Tensor)) {
    throw new InvalidArgumentError(`Expected a Tensor from \`encoder\` but received ${String(out)}`);
  }
  const tokens = out === image ? await image.clone() : out;
  const shape = tokens.shape;
  if (shape.length < 1 || shape[0] !== batch) {
    tokens.dispose();
    throw new InvalidArgumentError(`Expected ${batch} rows from \`encoder\` but received [${shape.join(', ')}]`);
  }
  return tokens;
}
