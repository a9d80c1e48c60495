/**
 * Classifier-free guidance (Ho & Salimans 2022) with optional guidance rescale (Lin et al. 2023,
 * arXiv 2305.08891, §3.4). Stage 1 uses w = 9, stage 2 w = 7.5, stage 3 w = 7.5 with φ = 0.2.
 *
 * (G1) out = u + w·(c − u) = (1 − w)·u + w·c          — one combine
 * (G2) k = φ·std(c)/(std(out) + ε) + (1 − φ)           — per batch element, unbiased std over the rest
 * (G3) out ← k·out                                     — one combine
 *
 * @module
 */
import { InvalidArgumentError } from './errors.js';
import { Tensor } from './tensor.js';

/** Options of {@link classifierFreeGuidance}. */
export interface GuidanceOptions {
  /** Guidance scale w (`guidance_scale`). Required. Example: 7.5. */
  readonly scale: number;
  /** Guidance rescale φ in [0, 1] (`guidance_rescale` / `guide_rescale`). Default 0 (off). Stage 3: 0.2. */
  readonly rescale?: number | undefined;
  /** ε in the std ratio's denominator. Default 1e-12 (modelscope); diffusers' `rescale_noise_cfg` uses 0. */
  readonly rescaleEpsilon?: number | undefined;
}

/**
 * (G2) The rescale factor k = φ·σ_c/(σ_out + ε) + 1 − φ.
 *
 * @example
 * ```ts
 * guidanceRescaleFactor(2, 3, 0.2, 0); // 0.2·2/3 + 0.8 ≈ 0.9333
 * ```
 */
export function guidanceRescaleFactor(stdCond: number, stdGuided: number, rescale: number, epsilon = 1e-12): number {
  return (rescale * stdCond) / (stdGuided + epsilon) + (1 - rescale);
}

function check(uncond: Tensor, cond: Tensor, options: GuidanceOptions): { w: number; phi: number; eps: number } {
  const w = options.scale;
  const phi = options.rescale ?? 0;
  const eps = options.rescaleEpsilon ?? 1e-12;
  if (!Number.isFinite(w)) throw new InvalidArgumentError(`Expected a finite number for \`scale\` but received ${w}`);
  if (!(phi >= 0 && phi <= 1)) throw new InvalidArgumentError(`Expected \`rescale\` in [0, 1] but received ${phi}`);
  if (!(eps >= 0)) throw new InvalidArgumentError(`Expected \`rescaleEpsilon\` ≥ 0 but received ${eps}`);
  if (uncond.shape.length !== cond.shape.length || uncond.shape.some((v, i) => v !== cond.shape[i])) {
    throw new InvalidArgumentError(
      `Expected uncond and cond of the same shape but received [${uncond.shape.join(', ')}] and [${cond.shape.join(', ')}]`,
    );
  }
  return { w, phi, eps };
}

async function guideOne(uncond: Tensor, cond: Tensor, w: number, phi: number, eps: number): Promise<Tensor> {
  const guided = await Tensor.combine([uncond, cond], [1 - w, w]); // (G1)
  if (phi === 0) return guided;
  try {
    const k = guidanceRescaleFactor(await cond.std(), await guided.std(), phi, eps); // (G2)
    return await Tensor.combine([guided], [k]); // (G3)
  } finally {
    guided.dispose();
  }
}

/**
 * Guided output from separate unconditional and conditional model outputs (borrowed; a new tensor is
 * returned). With `rescale` > 0 the std is taken per batch element (dim 0), as diffusers and modelscope do.
 *
 * @example
 * ```ts
 * const v = await classifierFreeGuidance(vUncond, vCond, { scale: 7.5, rescale: 0.2 }); // stage 3
 * ```
 */
export async function classifierFreeGuidance(uncond: Tensor, cond: Tensor, options: GuidanceOptions): Promise<Tensor> {
  const { w, phi, eps } = check(uncond, cond, options);
  const batch = cond.shape[0] ?? 1;
  if (phi === 0 || cond.shape.length === 0 || batch === 1) return guideOne(uncond, cond, w, phi, eps);
  const parts: Tensor[] = [];
  try {
    for (let b = 0; b < batch; b++) {
      const u = await uncond.narrow(0, b, 1);
      try {
        const c = await cond.narrow(0, b, 1);
        try {
          parts.push(await guideOne(u, c, w, phi, eps));
        } finally {
          c.dispose();
        }
      } finally {
        u.dispose();
      }
    }
    return await Tensor.cat(parts, 0);
  } finally {
    for (const p of parts) p.dispose();
  }
}

/**
 * Guidance on a batch-concatenated model output [uncond; cond] (the diffusers layout: the first half of
 * dim 0 is unconditional). Borrows `output`; returns a new tensor with half the batch.
 *
 * @example
 * ```ts
 * const eps2 = await unet(await Tensor.cat([z, z], 0), t, ctx); // (2, 4, 16, 32, 32)
 * const eps = await guidanceFromBatch(eps2, { scale: 7.5 });     // (1, 4, 16, 32, 32)
 * ```
 */
export async function guidanceFromBatch(output: Tensor, options: GuidanceOptions): Promise<Tensor> {
  const batch = output.shape[0];
  if (batch === undefined || batch % 2 !== 0) {
    throw new InvalidArgumentError(`Expected an even batch [uncond; cond] but received shape [${output.shape.join(', ')}]`);
  }
  const uncond = await output.narrow(0, 0, batch / 2);
  try {
    const cond = await output.narrow(0, batch / 2, batch / 2);
    try {
      return await classifierFreeGuidance(uncond, cond, options);
    } finally {
      cond.dispose();
    }
  } finally {
    uncond.dispose();
  }
}
