/**
 * TorchModule: a TorchScript file loaded through libtorch on one device.
 *
 * - `TorchModule.load(path, opts)` reads and prepares the file off the JS thread
 *   (`eval()`; optional dtype cast; optional `freeze`/`optimize` at load time, because
 *   `optimize_for_inference` results cannot be saved to disk);
 * - `forward(inputs)` takes positional (array) or named (object) inputs, checks them against the
 *   module's schema before anything is queued, and resolves with tensors, arrays (tuples/lists)
 *   or plain objects (dicts). Returned tensors belong to the caller.
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
  /** The `forward` schema: argument names and TorchScript types (without `self`). */
  readonly schema: NativeSchema;

  private constructor(native: NativeModule) {
    this.#native = native;
    this.schema = native.schema;
  }

  /** Loads a TorchScript file. Missing or corrupt files reject with {@link ModelLoadError} naming the file. */
  static async load(path: string, opts: LoadModuleOptions = {}): Promise<TorchModule> {
    if (typeof path !== 'string' || path.length === 0) {
      throw new InvalidArgumentError(`Expected a file path for \`path\` but received ${String(path)}`);
    }
    if (!existsSync(path) || !statSync(path).isFile()) {
      throw new ModelLoadError(path, `TorchScript file not found: ${path}`);
    }
    const options = {
      ...(opts.device === undefined ? {} : { device: opts.device }),
      ...(opts.dtype === undefined ? {} : { dtype: opts.dtype }),
      freeze: opts.freeze ?? false,
      optimize: opts.optimize ?? false,
    };
    try {
      return new TorchModule(await callNative(() => binding().loadModule(path, options)));
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
  /** The device it runs on. */
  get device(): string {
    return this.#native.device;
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
    let native: NativeInput[] | Record<string, NativeInput>;
    if (Array.isArray(inputs)) {
      native = inputs.map((v, i) => toNativeInput(v, this.schema.arguments[i]?.name ?? String(i)));
    } else if (inputs !== null && typeof inputs === 'object' && !(inputs instanceof Tensor)) {
      const known = new Set(this.inputNames);
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
  if (out instanceof Tensor) out.dispose();
  else if (Array.isArray(out)) out.forEach(disposeOutput);
  else if (out !== null && typeof out === 'object') Object.values(out).forEach(disposeOutput);
}
