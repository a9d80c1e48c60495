/**
 * TorchModule: a TorchScript file loaded through libtorch on one device.
 *
 * - `TorchModule.load(path, opts)` reads and prepares the file off the JS thread
 *   (`eval()`; optional dtype cast; optional `freeze`/`optimize` at load time, because
 *   `optimize_for_inference` results cannot be saved to disk);
 * - `forward(inputs)` takes positional (array) or named (object) inputs, checks them against the
 *   module's schema before anything is queued, and resolves with tensors, arrays (tuples/lists)
 *   or plain objects (dicts). Returned tensors belong to the caller;
 * - `moveTo({ device, dtype })` moves the weights in place (e.g. to the GPU, or to bfloat16), and
 *   `dtype` reports the weights' dtype; with the `castIO` load option, callers keep passing and
 *   receiving float32 tensors whatever the module's dtype.
 *
 * @example
 * ```ts
 * await using unet = await TorchModule.load('models/tiny/unet.pt', { device: 'cpu' });
 * const eps = await unet.forward({ sample, timestep, encoder_hidden_states: ctx });
 * ```
 */
import { existsSync, statSync } from 'node:fs';

import { binding, type DType, type NativeInput, type NativeModule, type NativeOutput, type NativeSchema } from './binding.js';
import { callNative, DisposedError, InvalidArgumentError, ModelLoadError, StreamingT2VError } from './errors.js';
import { castInputs, castOutputToFloat32, forEachOutputTensor, isFloatingDType } from './module-cast.js';
import { nativeOf, Tensor, wrap } from './tensor.js';

/** Options for {@link TorchModule.load}. */
export interface LoadModuleOptions {
  /** Device to load onto: `'cpu'`, `'cuda'`, `'cuda:N'`. Defaults to `'cpu'`. */
  device?: string;
  /** Cast floating-point parameters to this dtype after loading (e.g. `'float16'` on GPU). Defaults to the file's own. */
  dtype?: DType;
  /** Freeze the module (inline parameters as constants). Defaults to `false`. */
  freeze?: boolean;
  /** Freeze and run `optimize_for_inference` (CPU: may route Linear/Conv to oneDNN). Defaults to `false`. */
  optimize?: boolean;
  /**
   * Convert tensors at the module boundary, so callers can work in float32 whatever dtype the
   * weights have (e.g. after `{ dtype: 'bfloat16' }` or {@link TorchModule.moveTo}):
   * - every floating-point input tensor whose dtype differs from {@link TorchModule.dtype} is
   *   converted to it before the call (the copies are disposed after the call, also on error);
   * - every floating-point output tensor that is not float32 is converted to float32 (the
   *   module's own output is disposed).
   *
   * Integer and bool tensors (token ids, masks) are never cast. The conversions run natively on
   * the tensors' devices; they cost one copy per tensor. Does nothing for a module without
   * floating-point weights (`dtype` null). Defaults to `false`.
   *
   * @example
   * ```ts
   * const unet = await TorchModule.load('unet.pt', { device: 'cuda', dtype: 'bfloat16', castIO: true });
   * using eps = await unet.forwardTensor([latentsF32, t, ctxF32]); // float32 in, float32 out
   * ```
   */
  castIO?: boolean;
  /**
   * With `castIO`: names of `forward` inputs that are never cast (they keep the dtype the caller passes),
   * e.g. a float32 `timestep` that the network converts itself (manifest `fixed_dtype`). Defaults to none.
   */
  keepInputDtypes?: readonly string[];
}

/** Where {@link TorchModule.moveTo} puts the weights; omitted keys keep the current value. */
export interface ModuleTarget {
  /** `'cpu'`, `'cuda'` or `'cuda:N'`. */
  device?: string;
  /** A floating-point dtype for the floating-point parameters and buffers (integer buffers keep theirs). */
  dtype?: DType;
}

const DEVICE_PATTERN = /^(cpu|cuda(:\d+)?)$/;

function describe(value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : `${String(value)} of type ${typeof value}`;
}

/** A value passed to `forward`. */
export type ModuleInput = Tensor | number | bigint | boolean | string | null | ModuleInput[];
/** A value returned by `forward`. */
export type ModuleOutput = Tensor | number | boolean | string | null | ModuleOutput[] | { [key: string]: ModuleOutput };

function toNativeInput(value: ModuleInput, name: string): NativeInput {
  if (value instanceof Tensor) return nativeOf(value);
  if (Array.isArray(value)) return value.map((v) => toNativeInput(v, name));
  if (value === null || ['number', 'bigint', 'boolean', 'string'].includes(typeof value)) return value as NativeInput;
  throw new InvalidArgumentError(`Expected a Tensor, number, boolean, string, null or array for input \`${name}\` but received ${typeof value}`);
}

function fromNativeOutput(value: NativeOutput): ModuleOutput {
  if (Array.isArray(value)) return value.map(fromNativeOutput);
  if (value !== null && typeof value === 'object') {
    if ('byteLength' in value && 'dtype' in value) return wrap(value as never);
    const out: Record<string, ModuleOutput> = {};
    for (const [k, v] of Object.entries(value)) out[k] = fromNativeOutput(v as NativeOutput);
    return out;
  }
  return value;
}

export class TorchModule implements Disposable {
  readonly #native: NativeModule;
  readonly #castIO: boolean;
  readonly #keep: ReadonlySet<string>;
  /** `forward` input names, read once from the schema (every castIO call needs them). */
  readonly #names: readonly string[];
  /** The `forward` schema: argument names and TorchScript types (without `self`). */
  readonly schema: NativeSchema;

  private constructor(native: NativeModule, castIO: boolean, keep: readonly string[] = []) {
    this.#native = native;
    this.#castIO = castIO;
    this.#keep = new Set(keep);
    this.schema = native.schema;
    this.#names = this.schema.arguments.map((a) => a.name);
  }

  /** Loads a TorchScript file. Missing or corrupt files reject with {@link ModelLoadError} naming the file. */
  static async load(path: string, opts: LoadModuleOptions = {}): Promise<TorchModule> {
    if (typeof path !== 'string' || path.length === 0) {
      throw new InvalidArgumentError(`Expected a file path for \`path\` but received ${String(path)}`);
    }
    if (!existsSync(path) || !statSync(path).isFile()) {
      throw new ModelLoadError(path, `TorchScript file not found: ${path}`);
    }
    if (opts.castIO !== undefined && typeof opts.castIO !== 'boolean') {
      throw new InvalidArgumentError(`Expected a boolean for \`castIO\` but received ${describe(opts.castIO)}`);
    }
    const keep = opts.keepInputDtypes;
    if (keep !== undefined && (!Array.isArray(keep) || keep.some((k) => typeof k !== 'string'))) {
      throw new InvalidArgumentError(`Expected an array of input names for \`keepInputDtypes\` but received ${describe(keep)}`);
    }
    const options = {
      ...(opts.device === undefined ? {} : { device: opts.device }),
      ...(opts.dtype === undefined ? {} : { dtype: opts.dtype }),
      freeze: opts.freeze ?? false,
      optimize: opts.optimize ?? false,
    };
    try {
      return new TorchModule(await callNative(() => binding().loadModule(path, options)), opts.castIO ?? false, opts.keepInputDtypes ?? []);
    } catch (error) {
      if (error instanceof StreamingT2VError && (error.code === 'ERR_TORCH' || error.code === 'ERR_NATIVE')) {
        throw new ModelLoadError(path, `Cannot load TorchScript file ${path} (truncated, corrupt, or saved by a newer torch than this libtorch): ${error.message}`, {
          cause: error,
          nativeCall: 'loadModule',
        });
      }
      throw error;
    }
  }

  /** The file this module was loaded from. */
  get path(): string {
    return this.#native.path;
  }
  /** The device it runs on (during a {@link moveTo}, still the old one until the move completes). */
  get device(): string {
    return this.#native.device;
  }
  /**
   * dtype of the weights: of the first floating-point parameter, else of the first floating-point
   * buffer; `null` when the module has neither. Updated when a {@link moveTo} completes.
   */
  get dtype(): DType | null {
    return this.#native.dtype;
  }

  /**
   * Moves the parameters and buffers in place to another device and/or floating-point dtype
   * (integer buffers keep their dtype). The move is queued behind every forward already queued on
   * the current device, so those finish with the old weights first; until it settles, `forward()`
   * and another `moveTo()` reject with {@link InvalidArgumentError}. Afterwards `device` and
   * `dtype` report the new placement; pass tensors on the new device (and, without `castIO`, of
   * the new dtype). On failure (e.g. out of memory on the target) the weights are put back.
   *
   * Rejects with {@link InvalidArgumentError} for a bad target, a CUDA device this process cannot
   * use, or a module loaded with `freeze`/`optimize` (its weights are inlined as graph constants;
   * load it again with `{ device, dtype }` instead), and with {@link DisposedError} after `dispose()`.
   *
   * @example
   * ```ts
   * await unet.moveTo({ device: 'cuda', dtype: 'float16' }); // stage 2 needs the GPU now
   * await unet.moveTo({ device: 'cpu' });                    // and now it does not
   * ```
   */
  async moveTo(target: ModuleTarget): Promise<void> {
    if (this.#native.disposed) throw new DisposedError(`Module ${this.path}`);
    if (target === null || typeof target !== 'object' || Array.isArray(target)) {
      throw new InvalidArgumentError(`Expected an object { device?, dtype? } for \`target\` but received ${describe(target)}`);
    }
    const { device, dtype } = target;
    if (device !== undefined && (typeof device !== 'string' || !DEVICE_PATTERN.test(device))) {
      throw new InvalidArgumentError(`Expected 'cpu', 'cuda' or 'cuda:N' for \`device\` but received ${describe(device)}`);
    }
    if (dtype !== undefined && !isFloatingDType(dtype)) {
      throw new InvalidArgumentError(`Expected 'float32', 'float16', 'bfloat16' or 'float64' for \`dtype\` but received ${describe(dtype)}`);
    }
    await callNative(() => this.#native.moveTo({ ...(device === undefined ? {} : { device }), ...(dtype === undefined ? {} : { dtype }) }));
  }
  /** Names of the `forward` inputs, in order. */
  get inputNames(): string[] {
    return this.schema.arguments.map((a) => a.name);
  }

  /**
   * Runs `forward` off the JS thread. Inputs are pinned natively until the call settles, so
   * disposing an input tensor (or the module) meanwhile is safe.
   */
  async forward(inputs: ModuleInput[] | Record<string, ModuleInput>): Promise<ModuleOutput> {
    if (this.#native.disposed) throw new DisposedError(`Module ${this.path}`);
    const dtype = this.#castIO ? this.#native.dtype : null;
    if (dtype === null) return this.#forward(inputs);
    const temporaries: Tensor[] = [];
    try {
      return await castOutputToFloat32(await this.#forward(await castInputs(inputs, dtype, temporaries, this.#keep, this.#names)));
    } finally {
      for (const t of temporaries) t.dispose();
    }
  }

  async #forward(inputs: ModuleInput[] | Record<string, ModuleInput>): Promise<ModuleOutput> {
    let native: NativeInput[] | Record<string, NativeInput>;
    if (Array.isArray(inputs)) {
      native = inputs.map((v, i) => toNativeInput(v, this.schema.arguments[i]?.name ?? String(i)));
    } else if (inputs !== null && typeof inputs === 'object' && !(inputs instanceof Tensor)) {
      const known = new Set(this.#names);
      native = {};
      for (const [k, v] of Object.entries(inputs)) {
        if (!known.has(k)) {
          throw new InvalidArgumentError(`Unknown input \`${k}\` for ${this.path}; expected one of ${this.inputNames.join(', ')}`);
        }
        native[k] = toNativeInput(v, k);
      }
    } else {
      throw new InvalidArgumentError('Expected forward inputs as an array (positional) or an object (named)');
    }
    return fromNativeOutput(await callNative(() => this.#native.forward(native)));
  }

  /** Forward that must return exactly one tensor. */
  async forwardTensor(inputs: ModuleInput[] | Record<string, ModuleInput>): Promise<Tensor> {
    const out = await this.forward(inputs);
    if (!(out instanceof Tensor)) {
      disposeOutput(out);
      throw new InvalidArgumentError(`Expected ${this.path} to return one tensor`);
    }
    return out;
  }

  /** True once disposed. */
  get disposed(): boolean {
    return this.#native.disposed;
  }
  /** Drops the module; a forward in flight finishes first. Idempotent. */
  dispose(): void {
    this.#native.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Disposes every tensor inside a forward output. */
export function disposeOutput(out: ModuleOutput): void {
  forEachOutputTensor(out, (t) => t.dispose());
}
