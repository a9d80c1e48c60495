/**
 * Classifier-free-guidance denoisers: run the network on the batch-concatenated [uncond; cond] pair
 * (spec §1.6, G15) and combine with lib/guidance.ts. Under a tight memory plan (memory-plan.ts) the
 * pair runs as two calls of batch B instead, halving the call's activations; the guided result is the
 * same (guidance reads the two halves either way).
 * @module
 */
import { classifierFreeGuidance, guidanceFromBatch } from '../guidance.js';
import { InvalidArgumentError } from '../errors.js';
import type { ModuleInput, TorchModule } from '../module.js';
import { Tensor, TensorScope } from '../tensor.js';

/** Duplicates `x` along the batch axis: [B, ...] -> [2B, ...] (uncond first). */
export async function doubleBatch(x: Tensor): Promise<Tensor> {
  return Tensor.cat([x, x], 0);
}

/** Guidance settings of {@link guidedForward}. */
export interface GuidedForwardOptions {
  /** CFG scale w. Example: 7.5. */
  scale: number;
  /** Guidance rescale φ in [0, 1]. Default 0 (off); stage 3 uses 0.2. */
  rescale?: number | undefined;
  /**
   * Run the CFG pair as two network calls of batch B (uncond, then cond) instead of one of batch 2B:
   * half the activation memory, the same result. Default false. Set per stage by the memory plan.
   */
  splitBatch?: boolean | undefined;
}

/**
 * One guided network call: `module.forward([cat(x,x), t·1, ...extra])` then w-guidance (and rescale).
 * `extra` inputs must already be CFG batches (2B, uncond first); non-tensor inputs are passed as they
 * are. With `splitBatch`, every tensor in `extra` is split along dim 0 into its two halves and the
 * network runs twice on batch B. Returns the guided output [B, ...] (caller owns).
 *
 * @example
 * ```ts
 * const eps = await guidedForward(unet, z, 981, [textPair], { scale: 9, splitBatch: true });
 * ```
 */
export async function guidedForward(module: TorchModule, x: Tensor, t: number, extra: readonly ModuleInput[], options: GuidedForwardOptions): Promise<Tensor> {
  const guidance = { scale: options.scale, rescale: options.rescale ?? 0 };
  using scope = new TensorScope();
  if (options.splitBatch !== true) {
    const xx = scope.track(await doubleBatch(x));
    const batch = xx.shape[0] ?? 2;
    const tt = scope.track(await Tensor.full([batch], t, { device: x.device }));
    const out = scope.track(await module.forwardTensor([xx, tt, ...extra]));
    return await guidanceFromBatch(out, guidance);
  }
  const batch = x.shape[0] ?? 1;
  for (const e of extra) {
    if (Array.isArray(e)) throw new InvalidArgumentError('Expected tensors or scalars for the CFG `extra` inputs of a split call but received an array');
    if (e instanceof Tensor && e.shape[0] !== 2 * batch) {
      throw new InvalidArgumentError(`Expected a CFG batch of ${2 * batch} along dim 0 for an \`extra\` input but received shape [${e.shape.join(', ')}]`);
    }
  }
  const half = async (h: 0 | 1): Promise<ModuleInput[]> => {
    const out: ModuleInput[] = [];
    for (const e of extra) out.push(e instanceof Tensor ? scope.track(await e.narrow(0, h * batch, batch)) : e);
    return out;
  };
  const tt = scope.track(await Tensor.full([batch], t, { device: x.device }));
  // The uncond call's inputs are released before the cond call allocates its own.
  const uncondExtra = await half(0);
  const uncond = scope.track(await module.forwardTensor([x, tt, ...uncondExtra]));
  for (const e of uncondExtra) if (e instanceof Tensor) e.dispose();
  const cond = scope.track(await module.forwardTensor([x, tt, ...(await half(1))]));
  // Identical to guidanceFromBatch(cat([uncond, cond])): that narrows the same two halves back out.
  return await classifierFreeGuidance(uncond, cond, guidance);
}
