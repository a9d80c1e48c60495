/**
 * Stage 3 (spec §1.8, §1.9, §4.2): SDEdit enhancement with the MS-Vid2Vid-XL enhancer.
 *
 * Stage-2 frames are resized to a square (720 for `full`, bicubic), letterboxed to 1280x720 (the
 * official layout) or kept square ('crop'), VAE-encoded with a posterior sample (G6), noised to
 * t = noiseLevel-1 with ONE noise tensor for the whole video, and denoised with DPM++(2M) SDE in
 * chunks with randomized blending of x̂0 at every step. This file holds the per-frame-batch
 * encode/decode and the per-chunk guided x̂0; the chunk loop and blending live in blending.ts.
 * @module
 */
import type { TorchModule } from '../module.js';
import { type Generator, Tensor, TensorScope } from '../tensor.js';
import { vpScalingsAt, type LogSnrTable } from '../schedulers/logsnr-cosine.js';
import { vpOutputToPredOriginal } from '../schedulers/vp-denoiser.js';
import type { PredictionType } from '../schedulers/types.js';
import { guidedForward } from './cfg.js';

/** How square enhanced frames are framed: letterboxed to `padWidth` (official) or left square. */
export type EnhanceLayout = 'pad' | 'crop';

/** Geometry of the enhanced video. */
export interface EnhanceGeometry {
  /** Side of the square the stage-2 frames are resized to. */
  size: number;
  /** Output width when `layout` is 'pad' (the height is `size`). */
  padWidth: number;
  layout: EnhanceLayout;
}

/** Output width and height of the enhanced video. */
export function enhancedSize(g: EnhanceGeometry): { width: number; height: number } {
  return { width: g.layout === 'pad' ? Math.max(g.padWidth, g.size) : g.size, height: g.size };
}

/**
 * Encodes `count` stage-2 RGB frames (uint8 [count, H, W, 3]) to enhancer latents [1, C, count, h, w]:
 * resize (bicubic, antialias), letterbox, VAE posterior sample mean + std·ε with ε from `generator`.
 */
export async function encodeFramesForEnhancement(
  encoder: TorchModule,
  rgb: Uint8Array,
  count: number,
  srcHeight: number,
  srcWidth: number,
  geometry: EnhanceGeometry,
  generator: Generator,
  device: string,
): Promise<Tensor> {
  using scope = new TensorScope();
  const video = scope.track(await Tensor.fromRgbFrames(rgb, [1, count, srcHeight, srcWidth, 3], { device }));
  const { size, layout } = geometry;
  let x = video;
  if (srcHeight !== size || srcWidth !== size) x = scope.track(await video.resize([size, size], 'bicubic', { antialias: true }));
  const { width } = enhancedSize(geometry);
  if (layout === 'pad' && width > size) {
    const left = Math.floor((width - size) / 2);
    x = scope.track(await x.pad([left, width - size - left, 0, 0], -1)); // black bars: -1 in [-1, 1]
  }
  const out = await encoder.forward([x]);
  if (!Array.isArray(out) || !(out[0] instanceof Tensor) || !(out[1] instanceof Tensor)) {
    throw new TypeError('enhancer_vae_encoder must return (mean, std)');
  }
  const [mean, std] = [scope.track(out[0]), scope.track(out[1])];
  const eps = scope.track(await generator.randn(mean.shape, { device, dtype: mean.dtype }));
  return await Tensor.addcmul(mean, std, eps); // posterior sample mean + std ⊙ ε (G6)
}

/**
 * The stage-3 per-chunk x̂0 (spec §1.9 `model_fn`): c_in scaling, integer t, CFG with rescale on
 * [negative; prompt], then x̂0 = α_t·x_in − σ_t·v (v-prediction). Returns a chunk denoiser.
 * `splitCfg` runs the CFG pair as two UNet calls (memory plan; same result).
 */
export function enhancerChunkDenoiser(
  unet: TorchModule,
  context: Tensor,
  table: LogSnrTable,
  guidance: number,
  rescale: number,
  predictionType: PredictionType,
  splitCfg = false,
): (xChunk: Tensor, sigma: number) => Promise<Tensor> {
  return async (xChunk, sigma) => {
    const s = vpScalingsAt(table, sigma);
    using scope = new TensorScope();
    const xIn = scope.track(await Tensor.combine([xChunk], [s.cIn]));
    const out = scope.track(await guidedForward(unet, xIn, s.timestep, [context], { scale: guidance, rescale, splitBatch: splitCfg }));
    return await vpOutputToPredOriginal(xIn, out, s.alpha, s.sigma, predictionType);
  };
}

/** Decodes latents [1, C, n, h, w] to RGB bytes [n, H, W, 3] (truncated to uint8, as the stage-2 writer does). */
export async function decodeToRgb(decoder: TorchModule, latents: Tensor): Promise<Uint8Array> {
  using scope = new TensorScope();
  const video = scope.track(await decoder.forwardTensor([latents]));
  return await video.toRgbFrames({ round: false });
}
