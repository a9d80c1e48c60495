/**
 * Tensor: a typed handle over a native libtorch tensor that stays on its device (CPU or GPU).
 *
 * Every op runs natively on the device's worker thread and returns a Promise of a NEW tensor
 * that the caller owns and must `dispose()` (or track in a {@link TensorScope}). No op mutates
 * its inputs, so sharing tensors between readers is safe. Metadata (`shape`, `dtype`, `device`)
 * is read synchronously.
 *
 * Latents are `[B, C, F, H, W]` everywhere in this library.
 *
 * @example
 * ```ts
 * using x = await Tensor.randn([1, 4, 16, 32, 32], 33);
 * using y = await Tensor.combine([x, x], [0.5, 0.25]); // 0.75·x in one native call
 * console.log(y.shape, await y.std());
 * ```
 */
import { binding, type DType, type HostArray, type NativeTarget, type NativeTensor } from './binding.js';
import { callNative, callNativeSync, DisposedError, InvalidArgumentError } from './errors.js';

export type { DType } from './binding.js';
export { Generator } from './generator.js';
export { TensorScope } from './tensor-scope.js';

/** Where a tensor should live and its element type. */
export interface TensorOptions {
  /** `'cpu'`, `'cuda'` or `'cuda:N'`. Defaults to `'cpu'` for factories and to the source device for `to()`. */
  device?: string;
  /** Element type. Defaults to `'float32'` for factories and to the source dtype for `to()`. */
  dtype?: DType;
}

/** Resampling filters for {@link Tensor.resize}. */
export type ResizeMode = 'nearest' | 'bilinear' | 'bicubic' | 'area';

function target(opts: TensorOptions | undefined): NativeTarget | undefined {
  if (opts === undefined) return undefined;
  const out: NativeTarget = {};
  if (opts.device !== undefined) out.device = opts.device;
  if (opts.dtype !== undefined) out.dtype = opts.dtype;
  return out;
}

function checkShape(shape: readonly number[], name = 'shape'): void {
  if (!Array.isArray(shape) || shape.some((s) => !Number.isInteger(s) || s < 0)) {
    throw new InvalidArgumentError(`Expected an array of non-negative integers for \`${name}\` but received ${JSON.stringify(shape)}`);
  }
}

export class Tensor implements Disposable {
  /** @internal */
  readonly native: NativeTensor;
  readonly #shape: readonly number[];
  readonly #dtype: DType;
  readonly #device: string;

  /** @internal Wraps a native handle; use the static factories instead. */
  constructor(native: NativeTensor) {
    this.native = native;
    this.#shape = Object.freeze(callNativeSync(() => native.shape));
    this.#dtype = callNativeSync(() => native.dtype);
    this.#device = callNativeSync(() => native.device);
  }

  /** Sizes of each dimension, e.g. `[1, 4, 16, 32, 32]`. Throws `ERR_DISPOSED` after dispose. */
  get shape(): readonly number[] {
    this.ensureNotDisposed('shape');
    return this.#shape;
  }
  /** Element type. */
  get dtype(): DType {
    this.ensureNotDisposed('dtype');
    return this.#dtype;
  }
  /** Device, e.g. `'cpu'` or `'cuda:0'`. */
  get device(): string {
    this.ensureNotDisposed('device');
    return this.#device;
  }
  /** Number of elements. */
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  /** True once `dispose()` was called. */
  get disposed(): boolean {
    return this.native.disposed;
  }

  /** Frees the native storage now (if no running op still uses it). Idempotent. */
  dispose(): void {
    this.native.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** @internal */
  ensureNotDisposed(what: string): void {
    if (this.native.disposed) throw new DisposedError(`Tensor (${what})`);
  }

  // ---- factories -------------------------------------------------------------------------

  /** Copies a typed array into a new tensor (dtype from the array type unless `opts.dtype`). */
  static async fromArray(data: HostArray, shape: readonly number[], opts?: TensorOptions): Promise<Tensor> {
    checkShape(shape);
    return wrap(await callNative(() => binding().fromTypedArray(data, shape, target(opts))));
  }

  /** A tensor of zeros. */
  static zeros(shape: readonly number[], opts?: TensorOptions): Promise<Tensor> {
    return Tensor.full(shape, 0, opts);
  }

  /** A tensor filled with `value`. */
  static async full(shape: readonly number[], value: number, opts?: TensorOptions): Promise<Tensor> {
    checkShape(shape);
    return wrap(await callNative(() => binding().full(shape, value, target(opts))));
  }

  /**
   * Standard normal noise drawn on a CPU generator seeded with `seed`, then moved to the device:
   * bit-identical to `torch.randn(shape, generator=torch.Generator().manual_seed(seed))`.
   */
  static async randn(shape: readonly number[], seed: number | bigint, opts?: TensorOptions): Promise<Tensor> {
    checkShape(shape);
    return wrap(await callNative(() => binding().randn(shape, seed, target(opts))));
  }

  /** `Σ coeffs[i] · terms[i]` in one native call (shapes broadcast; dtype/device of `terms[0]`). */
  static async combine(terms: readonly Tensor[], coeffs: readonly number[]): Promise<Tensor> {
    if (terms.length === 0 || terms.length !== coeffs.length) {
      throw new InvalidArgumentError(`Expected as many coefficients as tensors for \`combine\` but received ${terms.length} tensors and ${coeffs.length} coefficients`);
    }
    for (const c of coeffs) {
      if (!Number.isFinite(c)) throw new InvalidArgumentError(`Expected finite numbers for \`coeffs\` but received ${c}`);
    }
    return wrap(await callNative(() => binding().combine(terms.map(nativeOf), coeffs)));
  }

  /** `a + value · (b ⊙ c)` elementwise (e.g. a VAE posterior sample mean + std ⊙ ε). */
  static async addcmul(a: Tensor, b: Tensor, c: Tensor, value = 1): Promise<Tensor> {
    return wrap(await callNative(() => binding().addcmul(nativeOf(a), nativeOf(b), nativeOf(c), value)));
  }

  /** Concatenates along `dim`. */
  static async cat(tensors: readonly Tensor[], dim: number): Promise<Tensor> {
    return wrap(await callNative(() => binding().cat(tensors.map(nativeOf), dim)));
  }

  // ---- ops ---------------------------------------------------------------------------------

  /** A copy of `length` entries from `start` along `dim` (a copy, so it never pins the source). */
  async narrow(dim: number, start: number, length: number): Promise<Tensor> {
    return wrap(await callNative(() => binding().narrow(this.native, dim, start, length)));
  }
  /** Same data with a new shape (`-1` infers one size). */
  async reshape(shape: readonly number[]): Promise<Tensor> {
    return wrap(await callNative(() => binding().reshape(this.native, shape)));
  }
  /** Reorders dimensions (contiguous result). */
  async permute(dims: readonly number[]): Promise<Tensor> {
    return wrap(await callNative(() => binding().permute(this.native, dims)));
  }
  /** Converts dtype and/or moves to a device; always returns a new tensor. */
  async to(opts: TensorOptions): Promise<Tensor> {
    return wrap(await callNative(() => binding().to(this.native, target(opts) ?? {})));
  }
  /** Clamps every element into `[min, max]`. */
  async clamp(min: number, max: number): Promise<Tensor> {
    return wrap(await callNative(() => binding().clamp(this.native, min, max)));
  }
  /** A deep copy. */
  async clone(): Promise<Tensor> {
    return wrap(await callNative(() => binding().clone(this.native)));
  }
  /**
   * Resizes the last two dimensions of `[N,C,H,W]` or `[B,C,F,H,W]` (frames are folded into the batch).
   * `antialias` applies to bilinear/bicubic downsampling (as `F.interpolate(..., antialias=True)`).
   */
  async resize(size: readonly [number, number], mode: ResizeMode, opts?: { antialias?: boolean; alignCorners?: boolean }): Promise<Tensor> {
    return wrap(await callNative(() => binding().resize(this.native, size, mode, opts?.antialias ?? false, opts?.alignCorners ?? false)));
  }
  /** Pads the last two dimensions by `[left, right, top, bottom]` with a constant. */
  async pad(padding: readonly [number, number, number, number], value = 0): Promise<Tensor> {
    return wrap(await callNative(() => binding().pad(this.native, padding, value)));
  }

  /** Mean over all elements (computed in float64). */
  mean(): Promise<number> {
    return callNative(() => binding().reduce(this.native, 'mean'));
  }
  /** Unbiased standard deviation over all elements, as `torch.std` (computed in float64). */
  std(): Promise<number> {
    return callNative(() => binding().reduce(this.native, 'std'));
  }
  /** Sum over all elements (float64). */
  sum(): Promise<number> {
    return callNative(() => binding().reduce(this.native, 'sum'));
  }
  /** max |x| over all elements (float64). */
  maxAbs(): Promise<number> {
    return callNative(() => binding().reduce(this.native, 'maxAbs'));
  }

  /** Copies the data to JS as float32 (any dtype, any device). */
  async toFloat32Array(): Promise<Float32Array> {
    return (await callNative(() => binding().toTypedArray(this.native, true))) as Float32Array;
  }
  /** Copies the data to JS in its own type (float16/bfloat16 become Float32Array, int64 BigInt64Array, bool Uint8Array). */
  toTypedArray(): Promise<HostArray> {
    return callNative(() => binding().toTypedArray(this.native, false));
  }

  /**
   * A video `[B,3,F,H,W]` in `[-1,1]` to interleaved RGB bytes laid out `[B,F,H,W,3]`.
   * Conversion happens on the device; values are truncated like the official writer unless `round`.
   */
  toRgbFrames(opts?: { round?: boolean }): Promise<Uint8Array> {
    return callNative(() => binding().toRgbFrames(this.native, opts?.round ?? false));
  }
  /** RGB bytes `[B,F,H,W,3]` to a float video `[B,3,F,H,W]` in `[-1,1]`. */
  static async fromRgbFrames(frames: Uint8Array, shape: readonly [number, number, number, number, number], opts?: TensorOptions): Promise<Tensor> {
    return wrap(await callNative(() => binding().fromRgbFrames(frames, shape, target(opts))));
  }

  /** Native tensors alive in this process (all handles not yet disposed or collected). */
  static liveCount(): number {
    return binding().liveTensorCount();
  }
}

/** @internal */
export function wrap(native: NativeTensor): Tensor {
  return new Tensor(native);
}

/** @internal */
export function nativeOf(t: Tensor): NativeTensor {
  if (!(t instanceof Tensor)) throw new InvalidArgumentError(`Expected a Tensor but received ${describe(t)}`);
  t.ensureNotDisposed('op input');
  return t.native;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'object';
  return `${String(value)} of type ${typeof value}`;
}
