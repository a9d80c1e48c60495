/**
 * The activation estimates behind the memory plan (memory-plan.ts): how many device bytes one network
 * call needs besides its weights, from the call's shape. ESTIMATES from conservative formulas, not
 * measurements; pure TypeScript.
 * @module
 */
import type { ComponentRole } from '../models/manifest-types.js';

/** One component's device footprint. */
export interface ComponentFootprint {
  /** Bytes of its weights on the device: the manifest's `files[file].bytes` scaled to the load dtype. Example: 2_822_467_720. */
  readonly weightBytes: number;
  /** Bytes per element of its weights and activations: 4 (float32), 2 (float16, bfloat16). */
  readonly dtypeBytes: number;
}

// ESTIMATES, deliberately on the high side; s = the component's dtype bytes, b = CFG batch (2, or 1
// when split), k = width scale = min(1, cbrt(params / full-size params)), params = weightBytes / s
// (the cube root overestimates the width of models that also shrink in depth, e.g. models/tiny).
//
// UNet over F frames of h × w latents (h = H/8), C = 320·k channels at full resolution (ModelScope
// UNet3D and MS-Vid2Vid-XL), n = 5 heads there (not scaled):
//   features = 32 · b·F·h·w·C · s         12 skips (5.1·C per position) + 12 CAM residuals + ≤ 16·C
//                                         live in a transformer block (q, k, v, out, GEGLU 8C): 26 → 32
//   scores   = (2s + 8) · min(cap, b·F·n·(h·w)²)   spatial self-attention at full resolution: the score
//            + (2s + 8) · min(cap, b·h·w·n·F²)      matrix, its softmax (float32 in the enhancer) and a
//                                                   cast; temporal attention likewise
//   cap      = ∞ for the stage-1/2 UNet3D (unchunked), 2^28 for the enhancer (vid2vid_unet.py chunks)
// VAE over m frames of H × W pixels:
//   features = 1024·k · m·H·W · s          four 256-channel tensors at full resolution (decoder up path)
//   scores   = (2s + 8) · min(2^28, m·(h·w)²)   mid-block self-attention (vae.py chunks at 2^28)
// Text encoder (b = 2, L = 77 tokens, D = 1024) and APM (b = 2, L = 257 tokens, D = 1280):
//   64 · b·L·D·k · s + (2s + 8) · b·16·L²
// Carried per stage 1/2: 16 latent-sized + 4 pixel-video-sized float32 tensors (sampler history,
// noise, memories, the decoded window). Stage 3: 8 latent-sized float32 tensors per VIDEO frame (the
// whole video's latents, noise, z and the sampler state live on the device) for one chunk's worth of
// frames in the peak, plus 16 chunk-sized ones; longer videos add stage3BytesPerFrame each.

/** Full-size parameter counts (models/tests: test_unet_cam_apm.py, test_aux_models.py; spec §5). */
export const FULL_SIZE_PARAMETERS: Readonly<Record<ComponentRole, number>> = {
  text_encoder: 340_387_840,
  apm_image_encoder: 654_376_704, // ViT-H/14 visual 632,076,800 + resampler 22,299,904
  vae_encoder: 34_163_664,
  vae_decoder: 49_490_199,
  unet_stage1: 1_411_233_860,
  unet_stage2: 2_102_460_468, // base UNet + mergers + mixers 1,480,478,804 + CAM 621,981,664
  enhancer_text_encoder: 340_387_840,
  enhancer_unet: 1_411_233_860,
  enhancer_vae_encoder: 34_163_664,
  enhancer_vae_decoder: 49_490_199,
};

const CHUNKED = 2 ** 28;
const F32 = 4;

/** What one network call works on. */
export interface CallShape {
  /** CFG batch of the UNets and text/image encoders: 2 ([uncond; cond]), or 1 when split. Ignored by the VAEs. */
  batch: number;
  /** Frames of the UNet call, or frames per VAE call. */
  frames: number;
  /** Height in pixels (latents are height / 8). */
  height: number;
  /** Width in pixels (latents are width / 8). */
  width: number;
}

/**
 * Estimated activation bytes of one call of `role` (the formulas above): an ESTIMATE, meant to be on
 * the high side, not a measurement. Exported for tests and for callers who want the numbers behind a plan.
 *
 * @example
 * ```ts
 * const unet = { weightBytes: 2 * 1_411_233_860, dtypeBytes: 2 };                      // full size, fp16
 * estimateActivation('unet_stage1', unet, { batch: 2, frames: 16, height: 256, width: 256 }); // 2_715_811_840
 * ```
 */
export function estimateActivation(role: ComponentRole, fp: ComponentFootprint, c: CallShape): number {
  const s = fp.dtypeBytes;
  const k = Math.min(1, Math.cbrt(fp.weightBytes / s / FULL_SIZE_PARAMETERS[role]));
  const score = 2 * s + 8;
  const h = c.height / 8;
  const w = c.width / 8;
  if (role === 'unet_stage1' || role === 'unet_stage2' || role === 'enhancer_unet') {
    const cap = role === 'enhancer_unet' ? CHUNKED : Number.POSITIVE_INFINITY;
    const features = 32 * c.batch * c.frames * h * w * 320 * k * s;
    const spatial = Math.min(cap, c.batch * c.frames * 5 * (h * w) ** 2);
    const temporal = Math.min(cap, c.batch * h * w * 5 * c.frames ** 2);
    return Math.ceil(features + score * (spatial + temporal));
  }
  if (role === 'vae_decoder' || role === 'vae_encoder' || role === 'enhancer_vae_decoder' || role === 'enhancer_vae_encoder') {
    return Math.ceil(1024 * k * c.frames * c.height * c.width * s + score * Math.min(CHUNKED, c.frames * (h * w) ** 2));
  }
  const [tokens, dim] = role === 'apm_image_encoder' ? [257, 1280] : [77, 1024];
  return Math.ceil(64 * c.batch * tokens * dim * k * s + score * c.batch * 16 * tokens ** 2);
}

/** Latent-sized float32 bytes (4 channels) of `frames` frames of H × W pixels. */
export function latentBytes(frames: number, height: number, width: number): number {
  return 4 * frames * (height / 8) * (width / 8) * F32;
}

/**
 * Estimated bytes a stage keeps on the device besides the network calls (the "Carried" formulas
 * above): 'generate' (stages 1–2) over a window of `frames` frames, 'enhance' (stage 3) for a video
 * of `frames` frames (one chunk in a plan's peak).
 *
 * @example
 * ```ts
 * estimateCarried('enhance', 24, 720, 1280); // 24 frames × 8 + 16 × 24-frame latents of 4×90×160 float32
 * ```
 */
export function estimateCarried(kind: 'generate' | 'enhance', frames: number, height: number, width: number): number {
  if (kind === 'enhance') return frames * estimateEnhanceBytesPerFrame(height, width) + 16 * latentBytes(frames, height, width);
  return 16 * latentBytes(frames, height, width) + 4 * 3 * frames * height * width * F32;
}

/** Stage 3's device bytes per video frame: 8 latent-sized float32 tensors (latents, noise, z, sampler state). */
export function estimateEnhanceBytesPerFrame(height: number, width: number): number {
  return 8 * latentBytes(1, height, width);
}
