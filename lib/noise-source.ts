/**
 * Stage-3 shared noise (spec §4.2, §10.5): the SDEdit forward noise and the DPM-Solver++(2M) SDE noise are
 * each one field over the WHOLE video, so the overlapping frames of neighbouring chunks see identical noise
 * at every step.
 *
 * Construction: one standard normal draw per (stream, frame), stream 0 = SDEdit forward noise ε, stream i+1
 * = solver step i, from a CPU generator seeded with splitmix64(seed, stream, frame); frames are concatenated
 * along the frame axis. Why this and not a Brownian tree:
 * - Same law. For a fixed sigma grid, k-diffusion's Brownian-tree sampler returns (W(σ_{i+1}) − W(σ_i))/√|Δσ|
 *   on disjoint intervals: i.i.d. N(0, I) per step, which is exactly one fresh normal field per step. The tree
 *   only matters when queries overlap or refine (adaptive steps), which a fixed 30-step 2M-SDE never does.
 * - Chunk independence by construction: a frame's noise depends only on (seed, stream, frame), not on how the
 *   video is chunked, how long it is, or which window asks; any window can be materialised without the rest.
 * - Device independence: drawn on CPU (torch's generator), then moved, so CPU and CUDA runs agree.
 * It is not bit-identical to modelscope's `BrownianTreeNoiseSampler` (torchsde's tree PRNG, seeded from the
 * global RNG): bit-exact stage-3 noise is impossible anyway (spec G8, G16).
 *
 * @module
 */
import { InvalidArgumentError } from './errors.js';
import type { StepNoise } from './schedulers/types.js';
import { Tensor, type DType } from './tensor.js';

const MASK64 = (1n << 64n) - 1n;
const MASK63 = (1n << 63n) - 1n;

function splitmix64(z: bigint): bigint {
  let v = (z + 0x9e3779b97f4a7c15n) & MASK64;
  v = ((v ^ (v >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  v = ((v ^ (v >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return v ^ (v >> 31n);
}

/**
 * The CPU-generator seed of one frame of one noise stream: splitmix64(splitmix64(splitmix64(seed) ⊕ stream)
 * ⊕ frame), masked to 63 bits. Stream 0 is the SDEdit forward noise, stream i+1 the solver's step i.
 *
 * @example
 * ```ts
 * sharedNoiseSeed(0, 1, 5); // a bigint in [0, 2^63)
 * ```
 */
export function sharedNoiseSeed(seed: number | bigint, stream: number, frame: number): bigint {
  const s = BigInt(seed) & MASK64;
  return splitmix64(splitmix64(splitmix64(s) ^ BigInt(stream)) ^ BigInt(frame)) & MASK63;
}

/** Options of {@link SharedNoiseSource}. */
export interface SharedNoiseOptions {
  /** Base seed. Default 0 (modelscope seeds its Brownian tree with 0, spec G11). */
  readonly seed?: number | bigint | undefined;
  /** Shape of the whole video latent, e.g. [1, 4, L, 90, 160]. Required. */
  readonly shape: readonly number[];
  /** Index of the frame axis in `shape`. Default 2 ([B, C, F, H, W]). */
  readonly frameDim?: number | undefined;
  /** Device of the returned noise when a request does not say. Default 'cpu'. */
  readonly device?: string | undefined;
  /** Dtype of the returned noise when a request does not say. Default 'float32'. */
  readonly dtype?: DType | undefined;
}

/**
 * Deterministic noise fields over a whole video, addressable by frame window.
 *
 * @example
 * ```ts
 * const source = new SharedNoiseSource({ seed: 0, shape: [1, 4, 72, 90, 160], device: 'cuda' });
 * const eps = await source.initialNoise();            // SDEdit: z = α·lat + σ·eps
 * const hook = source.stepNoise();                    // for sampleDpmpp2mSde({ noise: hook })
 * const w1 = await source.stepNoiseFor(3, 16, 24);    // frames 16..39 of step 3 = the same values
 * ```
 */
export class SharedNoiseSource {
  readonly seed: bigint;
  readonly shape: readonly number[];
  readonly frameDim: number;
  readonly frames: number;
  readonly #device: string;
  readonly #dtype: DType;

  constructor(options: SharedNoiseOptions) {
    const frameDim = options.frameDim ?? 2;
    const frames = options.shape[frameDim];
    if (frames === undefined || !options.shape.every((v) => Number.isInteger(v) && v > 0)) {
      throw new InvalidArgumentError(
        `Expected a positive integer shape with a frame axis ${frameDim} but received [${options.shape.join(', ')}]`,
      );
    }
    this.seed = BigInt(options.seed ?? 0);
    this.shape = Object.freeze([...options.shape]);
    this.frameDim = frameDim;
    this.frames = frames;
    this.#device = options.device ?? 'cpu';
    this.#dtype = options.dtype ?? 'float32';
  }

  /** Noise of stream `stream` for frames [frameStart, frameStart + frameCount). The caller owns the result. */
  async window(
    stream: number,
    frameStart = 0,
    frameCount = this.frames - frameStart,
    target: { device?: string | undefined; dtype?: DType | undefined } = {},
  ): Promise<Tensor> {
    if (!Number.isInteger(frameStart) || !Number.isInteger(frameCount) || frameStart < 0 || frameCount < 1 ||
        frameStart + frameCount > this.frames) {
      throw new InvalidArgumentError(
        `Expected a frame window inside [0, ${this.frames}) but received start ${frameStart}, count ${frameCount}`,
      );
    }
    const frameShape = this.shape.map((v, i) => (i === this.frameDim ? 1 : v));
    const opts = { device: target.device ?? this.#device, dtype: target.dtype ?? this.#dtype };
    const draws = await Promise.allSettled(
      Array.from({ length: frameCount }, (_, k) =>
        Tensor.randn(frameShape, sharedNoiseSeed(this.seed, stream, frameStart + k), opts),
      ),
    );
    const parts = draws.flatMap((d) => (d.status === 'fulfilled' ? [d.value] : []));
    const failed = draws.find((d): d is PromiseRejectedResult => d.status === 'rejected');
    if (failed !== undefined) {
      for (const p of parts) p.dispose();
      throw failed.reason;
    }
    if (parts.length === 1) return parts[0]!;
    try {
      return await Tensor.cat(parts, this.frameDim);
    } finally {
      for (const p of parts) p.dispose();
    }
  }

  /** The SDEdit forward noise ε (stream 0) for a frame window. */
  initialNoise(frameStart = 0, frameCount = this.frames - frameStart, target: { device?: string; dtype?: DType } = {}): Promise<Tensor> {
    return this.window(0, frameStart, frameCount, target);
  }

  /** The solver noise n_i of step `index` (stream index + 1) for a frame window. */
  stepNoiseFor(index: number, frameStart = 0, frameCount = this.frames - frameStart, target: { device?: string; dtype?: DType } = {}): Promise<Tensor> {
    if (!Number.isInteger(index) || index < 0) throw new InvalidArgumentError(`Expected a step index ≥ 0 but received ${index}`);
    return this.window(index + 1, frameStart, frameCount, target);
  }

  /** A {@link StepNoise} hook giving the whole-video noise of each solver step, in the sample's device/dtype. */
  stepNoise(): StepNoise {
    return async (request) => {
      if (request.shape.length !== this.shape.length || request.shape.some((v, i) => v !== this.shape[i])) {
        throw new InvalidArgumentError(
          `This SharedNoiseSource covers shape [${this.shape.join(', ')}] but the sampler asked for [${request.shape.join(', ')}]`,
        );
      }
      return this.stepNoiseFor(request.index, 0, this.frames, { device: request.device, dtype: request.dtype });
    };
  }
}
