/**
 * Randomized blending of the stage-3 chunk x̂₀ (spec §4.2, §10.5).
 *
 * At EVERY solver step each chunk k of the {@link Stage3ChunkPlan} is denoised from the same x (the previous
 * step's sample, never a partially blended one), and the full-length x̂₀ is assembled: on the overlap of
 * chunks k−1 and k a cut r_k is drawn afresh, chunk k−1 keeps the first r_k overlap frames and chunk k owns
 * the rest (at least one). Chunk 0 owns from frame 0.
 *
 * Cut law. For boundary k with overlap [start_k, end_{k−1}) of O_k frames, the absolute cut position is
 * p_k = start_k + r_k with r_k ~ U{lo_k .. O_k − 1}, lo_k = max(0, p_{k−1} + 1 − start_k), p_0 = 0.
 * - Whenever chunk k does not reach back into chunk k−2 (the default C = 24, O = 8 on every regular
 *   boundary), lo_k = 0 and this is exactly the official U{0..O−1} (`random.randint(0, O−1)`).
 * - Only the end-aligned tail chunk (chunk-plan.ts) or configs with O > C/2 can reach into chunk k−2; there
 *   lo_k > 0 keeps p strictly increasing, so every chunk owns a non-empty contiguous range. The official
 *   "last writer wins" assignment could leave a chunk owning nothing there.
 * - O_k = 0 (only when O = 0) gives r_k = 0.
 * One `uniformInt` call is made per boundary per step, in boundary order, from a {@link Pcg32}.
 *
 * Ownership: chunk k owns frames [p_k, p_{k+1}) (p_n = L): a partition of [0, L) into non-empty ranges.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { SigmaDenoiser } from '../schedulers/types.js';
import { Tensor } from '../tensor.js';
import type { Stage3ChunkPlan } from './chunk-plan.js';
import type { Pcg32 } from './prng.js';

/** The cuts of one solver step (see the module comment for the law). */
export interface BlendCuts {
  /** r_k for each boundary, in boundary order (offset of the cut inside the overlap; chunk k−1 keeps r_k frames). */
  readonly offsets: readonly number[];
  /** p_k for each chunk: the first latent frame it owns (p_0 = 0, p_k = start_k + r_k); strictly increasing. */
  readonly positions: readonly number[];
}

/** The frames one chunk contributes to the blended x̂₀. */
export interface OwnedRange {
  /** Chunk index. */
  readonly chunk: number;
  /** First owned latent frame of the whole video (inclusive). */
  readonly start: number;
  /** Last owned latent frame + 1 (exclusive). */
  readonly end: number;
  /** start − chunk start: first owned frame inside the chunk's own x̂₀. */
  readonly localStart: number;
  /** Number of owned frames (≥ 1). */
  readonly count: number;
}

/** The allowed offsets {lo..hi} of boundary `k − 1` given the previous chunk's position (module comment). */
function offsetRange(plan: Stage3ChunkPlan, k: number, prevPosition: number): { lo: number; hi: number } {
  const boundary = plan.boundaries[k - 1]!;
  if (boundary.overlap === 0) return { lo: 0, hi: 0 };
  return { lo: Math.max(0, prevPosition + 1 - boundary.start), hi: boundary.overlap - 1 };
}

/**
 * Draws the cuts of one solver step: one `rng.uniformInt` per boundary, in order.
 *
 * @example
 * ```ts
 * const plan = planStage3Chunks({ length: 72 });
 * const rng = new Pcg32(33);
 * const cuts = drawBlendCuts(plan, rng); // offsets: 3 values in 0..7
 * ```
 */
export function drawBlendCuts(plan: Stage3ChunkPlan, rng: Pcg32): BlendCuts {
  const offsets: number[] = [];
  const positions: number[] = [0];
  for (let k = 1; k < plan.chunks.length; k++) {
    const { lo, hi } = offsetRange(plan, k, positions[k - 1]!);
    const r = lo + rng.uniformInt(hi - lo + 1);
    offsets.push(r);
    positions.push(plan.boundaries[k - 1]!.start + r);
  }
  return Object.freeze({ offsets: Object.freeze(offsets), positions: Object.freeze(positions) });
}

/**
 * Builds cuts from given offsets r_k (replay, tests), checking each against the law's range.
 *
 * @example
 * ```ts
 * blendCutsFromOffsets(planStage3Chunks({ length: 40 }), [7]).positions; // [0, 23]
 * ```
 */
export function blendCutsFromOffsets(plan: Stage3ChunkPlan, offsets: readonly number[]): BlendCuts {
  if (!Array.isArray(offsets) || offsets.length !== plan.boundaries.length) {
    throw new InvalidArgumentError(
      `Expected ${plan.boundaries.length} offsets for \`offsets\` but received ${Array.isArray(offsets) ? offsets.length : String(offsets)}`,
    );
  }
  const positions: number[] = [0];
  for (let k = 1; k < plan.chunks.length; k++) {
    const { lo, hi } = offsetRange(plan, k, positions[k - 1]!);
    const r = offsets[k - 1];
    if (typeof r !== 'number' || !Number.isInteger(r) || r < lo || r > hi) {
      throw new InvalidArgumentError(`Expected an integer in [${lo}, ${hi}] for \`offsets[${k - 1}]\` but received ${String(r)}`);
    }
    positions.push(plan.boundaries[k - 1]!.start + r);
  }
  return Object.freeze({ offsets: Object.freeze([...offsets]), positions: Object.freeze(positions) });
}

/**
 * The frame ownership map: for each chunk the range of its own x̂₀ that lands in the blended output.
 * The ranges are non-empty, in chunk order, and tile [0, L).
 *
 * @example
 * ```ts
 * const plan = planStage3Chunks({ length: 40 });          // chunks [0,24) and [16,40)
 * blendOwnership(plan, blendCutsFromOffsets(plan, [3]));
 * // [{ chunk: 0, start: 0, end: 19, localStart: 0, count: 19 }, { chunk: 1, start: 19, end: 40, localStart: 3, count: 21 }]
 * ```
 */
export function blendOwnership(plan: Stage3ChunkPlan, cuts: BlendCuts): readonly OwnedRange[] {
  if (cuts.positions.length !== plan.chunks.length) {
    throw new InvalidArgumentError(
      `Expected cuts for ${plan.chunks.length} chunks for \`cuts\` but received ${cuts.positions.length}`,
    );
  }
  return plan.chunks.map((chunk, k) => {
    const start = cuts.positions[k]!;
    const end = k + 1 < plan.chunks.length ? cuts.positions[k + 1]! : plan.length;
    if (!(start >= chunk.start && end <= chunk.end && end > start)) {
      throw new InvalidArgumentError(`Expected cut positions inside chunk ${k} [${chunk.start}, ${chunk.end}) but received [${start}, ${end})`);
    }
    return Object.freeze({ chunk: k, start, end, localStart: start - chunk.start, count: end - start });
  });
}

// ---- native part -------------------------------------------------------------------------------

/** Options of the tensor functions of this module. */
export interface BlendTensorOptions {
  /** Frame axis of the latents. Default 2 ([B, C, F, H, W]). */
  readonly frameDim?: number | undefined;
}

function frameDimOf(options: BlendTensorOptions | undefined, rank: number): number {
  const d = options?.frameDim ?? 2;
  if (!Number.isInteger(d) || d < 0 || d >= rank) {
    throw new InvalidArgumentError(`Expected an integer in [0, ${rank - 1}] for \`frameDim\` but received ${d}`);
  }
  return d;
}

function checkChunkShape(t: Tensor, expected: readonly number[], frameDim: number, what: string): void {
  const shape = t.shape;
  if (shape.length !== expected.length || shape.some((v, i) => (i === frameDim ? false : v !== expected[i]))) {
    throw new InvalidArgumentError(`Expected a tensor of shape [${expected.join(', ')}] for \`${what}\` but received [${shape.join(', ')}]`);
  }
}

/** Takes the owned frames of a chunk's x̂₀; `whole` when no narrow is needed. */
async function ownedPart(x0: Tensor, range: OwnedRange, chunkLength: number, frameDim: number): Promise<{ t: Tensor; whole: boolean }> {
  if (range.localStart === 0 && range.count === chunkLength) return { t: x0, whole: true };
  return { t: await x0.narrow(frameDim, range.localStart, range.count), whole: false };
}

/**
 * Builds the full-length blended x̂₀ [B, C, L, H, W] from every chunk's x̂₀ [B, C, len_k, H, W] with narrow + cat
 * (no per-element JS). Borrows `chunkOutputs` (never disposes them); the caller owns the result.
 *
 * @example
 * ```ts
 * const cuts = drawBlendCuts(plan, rng);
 * using x0 = await assembleBlended(chunkX0s, plan, cuts);
 * ```
 */
export async function assembleBlended(
  chunkOutputs: readonly Tensor[],
  plan: Stage3ChunkPlan,
  cuts: BlendCuts,
  options?: BlendTensorOptions,
): Promise<Tensor> {
  if (!Array.isArray(chunkOutputs) || chunkOutputs.length !== plan.chunks.length) {
    throw new InvalidArgumentError(
      `Expected ${plan.chunks.length} chunk tensors for \`chunkOutputs\` but received ${Array.isArray(chunkOutputs) ? chunkOutputs.length : String(chunkOutputs)}`,
    );
  }
  const ranges = blendOwnership(plan, cuts);
  const first = chunkOutputs[0]!;
  const frameDim = frameDimOf(options, first.shape.length);
  const expected = [...first.shape];
  chunkOutputs.forEach((t, k) => {
    expected[frameDim] = plan.chunks[k]!.length;
    checkChunkShape(t, expected, frameDim, `chunkOutputs[${k}]`);
    if (t.shape[frameDim] !== plan.chunks[k]!.length) {
      throw new InvalidArgumentError(`Expected ${plan.chunks[k]!.length} frames for \`chunkOutputs[${k}]\` but received ${t.shape[frameDim]}`);
    }
  });
  const temps: Tensor[] = [];
  try {
    const pieces: Tensor[] = [];
    for (const range of ranges) {
      const part = await ownedPart(chunkOutputs[range.chunk]!, range, plan.chunks[range.chunk]!.length, frameDim);
      if (!part.whole) temps.push(part.t);
      pieces.push(part.t);
    }
    if (pieces.length === 1) return await first.clone(); // a lone chunk owns everything
    return await Tensor.cat(pieces, frameDim);
  } finally {
    for (const t of temps) t.dispose();
  }
}

/**
 * Denoises one chunk: x̂₀ of `xChunk` (the chunk's frames of the current sample x) at `sigma`. Must not dispose
 * `xChunk`; returns a new tensor of the same shape that the caller then owns. In stage 3 this runs CFG + rescale
 * and v → x̂₀ (spec §1.9).
 */
export type ChunkDenoiser = (xChunk: Tensor, sigma: number, chunkIndex: number) => Promise<Tensor>;

/**
 * Runs `denoiseChunk` on every chunk of x (in order, each on a copy of x's frames, so every chunk sees the
 * same x as in the official code) and returns the blended full-length x̂₀ for the given cuts. Keeps only the
 * owned frames of each chunk's output, so the peak is about L + 2·C frames of x̂₀. Borrows `x`.
 *
 * @example
 * ```ts
 * using x0 = await denoiseChunksBlended(x, sigma, plan, drawBlendCuts(plan, rng), denoiseChunk);
 * ```
 */
export async function denoiseChunksBlended(
  x: Tensor,
  sigma: number,
  plan: Stage3ChunkPlan,
  cuts: BlendCuts,
  denoiseChunk: ChunkDenoiser,
  options?: BlendTensorOptions,
): Promise<Tensor> {
  const frameDim = frameDimOf(options, x.shape.length);
  if (x.shape[frameDim] !== plan.length) {
    throw new InvalidArgumentError(`Expected ${plan.length} frames on axis ${frameDim} for \`x\` but received [${x.shape.join(', ')}]`);
  }
  const ranges = blendOwnership(plan, cuts);
  const pieces: Tensor[] = [];
  try {
    for (const chunk of plan.chunks) {
      const whole = chunk.start === 0 && chunk.length === plan.length;
      const xChunk = whole ? x : await x.narrow(frameDim, chunk.start, chunk.length);
      let x0: unknown;
      try {
        x0 = await denoiseChunk(xChunk, sigma, chunk.index);
      } catch (error) {
        if (!whole) xChunk.dispose();
        throw error;
      }
      if (x0 === xChunk) {
        if (whole) x0 = await x.clone(); // an identity denoiser returned the borrowed x: own a copy
      } else {
        if (!whole) xChunk.dispose();
        if (!(x0 instanceof Tensor)) {
          throw new InvalidArgumentError(`Expected a Tensor from \`denoiseChunk\` but received ${String(x0)}`);
        }
      }
      const out = x0 as Tensor;
      try {
        checkChunkShape(out, x.shape, frameDim, `denoiseChunk(chunk ${chunk.index})`);
        if (out.shape[frameDim] !== chunk.length) {
          throw new InvalidArgumentError(
            `Expected ${chunk.length} frames for \`denoiseChunk(chunk ${chunk.index})\` but received ${out.shape[frameDim]}`,
          );
        }
        const part = await ownedPart(out, ranges[chunk.index]!, chunk.length, frameDim);
        pieces.push(part.t);
        if (!part.whole) out.dispose();
      } catch (error) {
        out.dispose();
        throw error;
      }
    }
    if (pieces.length === 1) return pieces.pop()!;
    return await Tensor.cat(pieces, frameDim);
  } finally {
    for (const t of pieces) t.dispose();
  }
}

/** Options of {@link createBlendedDenoiser}. */
export interface BlendedDenoiserOptions extends BlendTensorOptions {
  /** The chunk plan over the whole latent video. Required. */
  readonly plan: Stage3ChunkPlan;
  /** Source of the cuts; its state advances by one draw per boundary per call. Save `getState()` to resume. */
  readonly rng: Pcg32;
  /** Observer of each step's cuts (logging, replay). Default none. */
  readonly onCuts?: ((cuts: BlendCuts, sigma: number) => void) | undefined;
}

/**
 * The stage-3 σ-space denoiser for `sampleDpmpp2mSde`: draws fresh cuts, denoises every chunk and returns the
 * blended x̂₀ (spec §4.2: one draw per boundary per solver step).
 *
 * @example
 * ```ts
 * const plan = planStage3Chunks({ length: z.shape[2]! });
 * const denoise = createBlendedDenoiser(chunkDenoiser, { plan, rng: new Pcg32(33) });
 * const lat0 = await sampleDpmpp2mSde(denoise, z, sigmas, { inputScale: sigmas[0], noise: source.stepNoise() });
 * ```
 */
export function createBlendedDenoiser(denoiseChunk: ChunkDenoiser, options: BlendedDenoiserOptions): SigmaDenoiser {
  const { plan, rng, onCuts } = options;
  return async (x, sigma) => {
    const cuts = drawBlendCuts(plan, rng);
    onCuts?.(cuts, sigma);
    return denoiseChunksBlended(x, sigma, plan, cuts, denoiseChunk, options);
  };
}
