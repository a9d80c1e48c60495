/**
 * Prompt encoding for both CFG halves: ids -> text encoder -> [1, 77, D] embeddings.
 * @module
 */
import type { TorchModule } from '../module.js';
import { Tensor, TensorScope } from '../tensor.js';
import type { Tokenize } from './models.js';

/** Encodes `text` with `tokenize` + `encoder`; returns [1, 77, D] (caller owns). */
export async function encodeText(text: string, tokenize: Tokenize, encoder: TorchModule, device: string): Promise<Tensor> {
  using scope = new TensorScope();
  const ids = scope.track(await tokenize(text, device));
  return await encoder.forwardTensor([ids]);
}

/** [uncond; cond] text embeddings stacked on the batch axis: [2, 77, D] (caller owns). */
export async function encodeCfgPair(prompt: string, negative: string, tokenize: Tokenize, encoder: TorchModule, device: string): Promise<Tensor> {
  using scope = new TensorScope();
  const u = scope.track(await encodeText(negative, tokenize, encoder, device));
  const c = scope.track(await encodeText(prompt, tokenize, encoder, device));
  return await Tensor.cat([u, c], 0);
}
