/**
 * Classifier-free-guidance denoisers: run the network once on the batch-concatenated
 * [uncond; cond] pair (spec §1.6, G15) and combine with lib/guidance.ts.
 * @module
 */
import { guidanceFromBatch } from '../guidance.js';
import type { ModuleInput, TorchModule } from '../module.js';
import { Tensor, TensorScope } from '../tensor.js';

/** Duplicates `x` along the batch axis: [B, ...] -> [2B, ...] (uncond first). */
export async function doubleBatch(x: Tensor): Promise<Tensor> {
  return Tensor.cat([x, x], 0);
}

/**
 * One guided network call: `module.forward([cat(x,x), t·1, ...extra])` then w-guidance (and rescale).
 * `extra` inputs must already be CFG batches (2B). Returns the guided output (caller owns).
 */
export async function guidedForward(
  module: TorchModule,
  x: Tensor,
  t: number,
  extra: readonly ModuleInput[],
  scale: number,
  rescale = 0,
): Promise<Tensor> {
  using scope = new TensorScope();
  const xx = scope.track(await doubleBatch(x));
  const batch = xx.shape[0] ?? 2;
  const tt = scope.track(await Tensor.full([batch], t, { device: x.device }));
  const out = scope.track(await module.forwardTensor([xx, tt, ...extra]));
  return await guidanceFromBatch(out, { scale, rescale });
}
