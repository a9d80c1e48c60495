/**
 * Loop plumbing shared by the samplers: fused linear combinations, noise drawing, shape checks and the
 * ownership rules (the caller's `x` is borrowed and never disposed; every intermediate is disposed; the
 * result is a new tensor the caller owns).
 *
 * @module
 * @internal
 */
import { InvalidArgumentError } from '../errors.js';
import type { Generator } from '../tensor.js';
import { Tensor } from '../tensor.js';
import type { NoiseRequest, SamplerRunOptions, StepInfo, StepNoise } from './types.js';

/**
 * Σ coeffs[i]·terms[i] in one native call. Terms after the first whose coefficient is 0 are left out (the
 * first one fixes the result's dtype and device, so it always stays).
 * @internal
 */
export function fuse(terms: readonly Tensor[], coeffs: readonly number[]): Promise<Tensor> {
  const t: Tensor[] = [];
  const c: number[] = [];
  terms.forEach((term, i) => {
    const k = coeffs[i]!;
    if (!Number.isFinite(k)) throw new InvalidArgumentError(`Sampler coefficient ${i} is not finite (${k})`);
    if (i === 0 || k !== 0) {
      t.push(term);
      c.push(k);
    }
  });
  return Tensor.combine(t, c);
}

/** @internal */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Throws unless the denoiser kept the sample's shape. @internal */
export function checkOutput(out: Tensor, x: Tensor, what: string): void {
  if (!sameShape(out.shape, x.shape)) {
    const message = `Expected the ${what} to return shape [${x.shape.join(', ')}] but received [${out.shape.join(', ')}]`;
    out.dispose();
    throw new InvalidArgumentError(message);
  }
}

/** Draws step noise from a hook or a generator, and checks its shape. @internal */
export async function drawNoise(
  request: NoiseRequest,
  hook: StepNoise | undefined,
  generator: Generator | undefined,
): Promise<Tensor> {
  let noise: Tensor;
  if (hook !== undefined) noise = await hook(request);
  else if (generator !== undefined) noise = await generator.randn(request.shape, { device: request.device, dtype: request.dtype });
  else throw new InvalidArgumentError('A stochastic sampler step needs `noise` or `generator`');
  if (!sameShape(noise.shape, request.shape)) {
    const message = `Expected step noise of shape [${request.shape.join(', ')}] but received [${noise.shape.join(', ')}]`;
    noise.dispose();
    throw new InvalidArgumentError(message);
  }
  return noise;
}

/** What one loop step produced. @internal */
export interface StepOutcome {
  readonly next: Tensor;
  readonly predOriginal: Tensor;
  readonly info: Pick<StepInfo, 'timestep' | 'sigma'>;
  readonly keepPredOriginal?: boolean;
}

/**
 * Runs `total` steps. `step(i, x)` returns the next sample and x̂₀ (both new, owned here, unless `keepPredOriginal`
 * says the step keeps x̂₀ itself, e.g. as multistep history). The running sample replaces the previous one, which
 * is disposed unless it is the caller's input. Aborts between steps.
 * @internal
 */
export async function runLoop(
  x: Tensor,
  total: number,
  options: SamplerRunOptions,
  step: (index: number, current: Tensor) => Promise<StepOutcome>,
): Promise<Tensor> {
  if (x.disposed) throw new InvalidArgumentError('The sampler input `x` was already disposed');
  let current = x;
  try {
    for (let i = 0; i < total; i++) {
      options.signal?.throwIfAborted();
      const { next, predOriginal, info, keepPredOriginal } = await step(i, current);
      try {
        await options.onStep?.({ ...info, index: i, total, x: next, predOriginal });
      } catch (error) {
        next.dispose();
        throw error;
      } finally {
        if (keepPredOriginal !== true) predOriginal.dispose();
      }
      if (current !== x) current.dispose();
      current = next;
    }
    return current === x ? await x.clone() : current;
  } catch (error) {
    if (current !== x) current.dispose();
    throw error;
  }
}
