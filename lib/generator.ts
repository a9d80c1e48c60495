/**
 * Generator: a seeded CPU random generator with state, the TS face of `torch.Generator()`.
 * Successive `randn` calls continue the same stream, exactly as Python's
 * `g = torch.Generator().manual_seed(seed); torch.randn(shape, generator=g)` does, so a run
 * reproduces the official stage-2 noise sequence. The state can be saved and restored (resume).
 *
 * @example
 * ```ts
 * using g = new Generator(33);
 * using z = await g.randn([1, 4, 16, 32, 32]);
 * const state = await g.getState(); // persist; later: await g.setState(state)
 * ```
 */
import { binding, type NativeGenerator } from './binding.js';
import { callNative, callNativeSync, DisposedError } from './errors.js';
import { wrap, type Tensor, type TensorOptions } from './tensor.js';

export class Generator implements Disposable {
  readonly #native: NativeGenerator;
  /** The seed this generator started from. */
  readonly seed: number | bigint;

  /** @param seed - a non-negative integer (number or bigint) as in `manual_seed`. */
  constructor(seed: number | bigint) {
    const NativeGeneratorCtor = binding().NativeGenerator;
    this.#native = callNativeSync(() => new NativeGeneratorCtor(seed));
    this.seed = seed;
  }

  /** Draws standard normal noise on the CPU from this stream, then moves it to `opts.device`/`opts.dtype`. */
  async randn(shape: readonly number[], opts?: TensorOptions): Promise<Tensor> {
    this.#ensure();
    const target = { ...(opts?.device === undefined ? {} : { device: opts.device }), ...(opts?.dtype === undefined ? {} : { dtype: opts.dtype }) };
    return wrap(await callNative(() => this.#native.randn(shape, target)));
  }

  /** The generator state (opaque bytes, as `torch.Generator.get_state()`). */
  getState(): Promise<Uint8Array> {
    this.#ensure();
    return callNative(() => this.#native.getState());
  }

  /** Restores a state from {@link getState}. */
  setState(state: Uint8Array): Promise<void> {
    this.#ensure();
    return callNative(() => this.#native.setState(state));
  }

  /** True once disposed. */
  get disposed(): boolean {
    return this.#native.disposed;
  }
  /** Releases the generator. Idempotent. */
  dispose(): void {
    this.#native.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  #ensure(): void {
    if (this.#native.disposed) throw new DisposedError('Generator');
  }
}
