/**
 * TensorScope: frees a step's temporaries in one place. `track()` registers a tensor,
 * `keep()` lets one escape (the caller takes ownership), `dispose()` frees the rest.
 *
 * @example
 * ```ts
 * using scope = new TensorScope();
 * const a = scope.track(await Tensor.randn([4], 1));
 * const b = scope.track(await Tensor.combine([a], [2]));
 * return scope.keep(b); // a is freed when the scope ends, b survives
 * ```
 */
import type { Tensor } from './tensor.js';

export class TensorScope implements Disposable {
  readonly #tracked = new Set<Tensor>();

  /** Registers `t` to be disposed with the scope; returns it for chaining. */
  track<T extends Tensor>(t: T): T {
    this.#tracked.add(t);
    return t;
  }

  /** Removes `t` from the scope so it survives `dispose()`; returns it. */
  keep<T extends Tensor>(t: T): T {
    this.#tracked.delete(t);
    return t;
  }

  /** Number of tensors currently tracked. */
  get size(): number {
    return this.#tracked.size;
  }

  /** Disposes every tracked tensor. Idempotent. */
  dispose(): void {
    for (const t of this.#tracked) t.dispose();
    this.#tracked.clear();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
