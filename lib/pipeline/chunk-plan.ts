/**
 * Frame bookkeeping of StreamingT2V, pure (no tensors, no addon):
 *
 * - {@link planStage2Windows}: how many autoregressive stage-2 windows produce `numFrames` frames
 *   (spec §1.5, G4, §10.1).
 * - {@link planStage3Chunks}: the overlapping latent chunks of the stage-3 enhancer so that EVERY latent
 *   frame is covered for any length (spec §4.2, G10).
 *
 * ## Stage-2 frame-count rule
 * Stage 1 yields one window of `W = 16` frames. Every stage-2 window is again `W` frames whose first
 * `F_cond = 8` positions re-generate the conditioning frames and are dropped; the last `W − F_cond = 8` are
 * new. The official loop (n = (N−8)//8 iterations, output 8n+8) is exact only for N % 8 == 0. We instead
 * generate `windows = max(0, ceil((N − W) / 8))` stage-2 windows and truncate the new frames of the LAST
 * window (or of stage 1 when N < W), so that exactly N frames come out:
 *
 * | N | windows | generated | trimmed tail |
 * |---|---|---|---|
 * | 1..16 | 0 | 16 | 16 − N |
 * | 24 | 1 | 24 | 0 |
 * | 30 | 2 | 32 | 2 |
 * | 80 | 8 | 80 | 0 (= official) |
 *
 * For every N ≥ 16 with N % 8 == 0 this is the official count (n − 1 model calls).
 *
 * ## Stage-3 tail coverage
 * Chunks of `C = 24` latent frames start at multiples of `S = C − O` (O = 8) while they fit. If the last
 * regular chunk ends before L, ONE extra full-length chunk aligned to end at L (start L − C) is appended; its
 * overlap with the previous chunk is larger than O (between O+1 and C−1 frames). L ≤ C gives a single chunk
 * `[0, L)`. So every frame is covered, every chunk but a lone one has length C, and every overlap is ≥ O.
 * The official code instead trims the video to (L−O) % S == 0 (spec §1.8 step 2, G10); for such L both plans
 * are identical.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';

/** Spec §1.5: stage-1 and stage-2 windows are 16 frames (`video_length`). */
export const DEFAULT_WINDOW_FRAMES = 16;
/** Spec §1.5: `num_control_input_frames` F_cond = 8 (asserted == F/2 upstream). */
export const DEFAULT_CONDITIONING_FRAMES = 8;
/** Spec §4.2: stage-3 chunk size C = 24 latent frames (hard-coded in `VideoToVideo`). */
export const DEFAULT_CHUNK_FRAMES = 24;
/** Spec §4.2: stage-3 chunk overlap O = 8 latent frames. */
export const DEFAULT_OVERLAP_FRAMES = 8;

function expectInteger(value: unknown, option: string, min: number, what = `an integer ≥ ${min}`): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new InvalidArgumentError(`Expected ${what} for \`${option}\` but received ${describe(value)}`);
  }
  return value;
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

// ---- stage 2 -----------------------------------------------------------------------------------

/** Options of {@link planStage2Windows}. */
export interface Stage2PlanOptions {
  /** Frames of the final video, an integer ≥ 1 (`num_frames`). Required. Example: 80. */
  readonly numFrames: number;
  /** Frames per window W (`video_length`), also the stage-1 length. Default 16. */
  readonly windowFrames?: number | undefined;
  /** Conditioning frames F_cond per window (`num_control_input_frames`), 1 ≤ F_cond < W. Default 8. */
  readonly conditioningFrames?: number | undefined;
}

/**
 * Where one generated window's kept frames land in the output video.
 * `window` 0 is stage 1; 1.. are stage-2 model calls.
 */
export interface WindowSegment {
  /** 0 = stage 1, k ≥ 1 = the k-th stage-2 window. */
  readonly window: number;
  /** First kept frame inside the window (0 for stage 1, F_cond for stage 2). */
  readonly keepStart: number;
  /** Number of kept frames (W or W − F_cond, fewer for a truncated last window). */
  readonly keepCount: number;
  /** Output frame index of the first kept frame. */
  readonly outputStart: number;
}

/** The stage-2 window plan from {@link planStage2Windows}. */
export interface Stage2Plan {
  /** Frames of the final video (N). */
  readonly numFrames: number;
  /** Frames per window W. */
  readonly windowFrames: number;
  /** Conditioning frames F_cond. */
  readonly conditioningFrames: number;
  /** New frames a stage-2 window keeps: W − F_cond (8). */
  readonly framesPerWindow: number;
  /** Stage-2 model calls (stage 1 not counted). */
  readonly windows: number;
  /** Frames the generator produces before truncation: W + windows·(W − F_cond). */
  readonly totalGenerated: number;
  /** Frames dropped from the end of the last window: totalGenerated − N (0 ≤ · < W − F_cond, or < W when windows = 0). */
  readonly trimmedTail: number;
  /** One entry per window (stage 1 first); the kept ranges tile `[0, N)` in order. */
  readonly segments: readonly WindowSegment[];
}

/**
 * Plans the stage-1 + stage-2 windows for `numFrames` output frames (rule in the module comment).
 *
 * @example
 * ```ts
 * planStage2Windows({ numFrames: 80 });  // windows 8, totalGenerated 80, trimmedTail 0
 * planStage2Windows({ numFrames: 30 });  // windows 2, totalGenerated 32, trimmedTail 2
 * planStage2Windows({ numFrames: 5 });   // windows 0: stage 1 only, first 5 of its 16 frames
 * ```
 */
export function planStage2Windows(options: Stage2PlanOptions): Stage2Plan {
  const numFrames = expectInteger(options.numFrames, 'numFrames', 1);
  const windowFrames = expectInteger(options.windowFrames ?? DEFAULT_WINDOW_FRAMES, 'windowFrames', 2);
  const conditioningFrames = expectInteger(
    options.conditioningFrames ?? DEFAULT_CONDITIONING_FRAMES,
    'conditioningFrames',
    1,
    `an integer in [1, ${windowFrames - 1}]`,
  );
  if (conditioningFrames >= windowFrames) {
    throw new InvalidArgumentError(
      `Expected an integer in [1, ${windowFrames - 1}] for \`conditioningFrames\` but received ${conditioningFrames}`,
    );
  }
  const framesPerWindow = windowFrames - conditioningFrames;
  const windows = numFrames <= windowFrames ? 0 : Math.ceil((numFrames - windowFrames) / framesPerWindow);
  const totalGenerated = windowFrames + windows * framesPerWindow;
  const segments: WindowSegment[] = [
    { window: 0, keepStart: 0, keepCount: Math.min(windowFrames, numFrames), outputStart: 0 },
  ];
  for (let k = 1; k <= windows; k++) {
    const outputStart = windowFrames + (k - 1) * framesPerWindow;
    segments.push({
      window: k,
      keepStart: conditioningFrames,
      keepCount: Math.min(framesPerWindow, numFrames - outputStart),
      outputStart,
    });
  }
  return Object.freeze({
    numFrames,
    windowFrames,
    conditioningFrames,
    framesPerWindow,
    windows,
    totalGenerated,
    trimmedTail: totalGenerated - numFrames,
    segments: Object.freeze(segments.map((s) => Object.freeze(s))),
  });
}

// ---- stage 3 -----------------------------------------------------------------------------------

/** Options of {@link planStage3Chunks}. */
export interface Stage3PlanOptions {
  /** Latent frames L of the whole video, an integer ≥ 1. Required. Example: 72. */
  readonly length: number;
  /** Chunk size C in latent frames (`chunk_size`). Default 24. */
  readonly chunkFrames?: number | undefined;
  /** Overlap O between regular neighbouring chunks (`overlap_size`), 0 ≤ O < C. Default 8. */
  readonly overlapFrames?: number | undefined;
}

/** One stage-3 chunk: latent frames `[start, end)` of the whole video. */
export interface PlannedChunk {
  /** Position in {@link Stage3ChunkPlan.chunks}. */
  readonly index: number;
  /** First latent frame (inclusive). */
  readonly start: number;
  /** Last latent frame + 1 (exclusive). */
  readonly end: number;
  /** end − start: C, or L for a lone chunk when L < C. */
  readonly length: number;
}

/** The overlap between chunk `index − 1` and chunk `index` (frames `[start, end)`). */
export interface ChunkBoundary {
  /** Index of the later chunk (≥ 1). */
  readonly index: number;
  /** First shared frame = start of the later chunk. */
  readonly start: number;
  /** End of the shared frames = end of the earlier chunk. */
  readonly end: number;
  /** O_k = end − start: O for regular boundaries, more for the tail chunk; 0 only when O = 0. */
  readonly overlap: number;
}

/** The stage-3 chunk plan from {@link planStage3Chunks}. */
export interface Stage3ChunkPlan {
  /** Latent frames L. */
  readonly length: number;
  /** Chunk size C. */
  readonly chunkFrames: number;
  /** Regular overlap O. */
  readonly overlapFrames: number;
  /** Regular stride S = C − O. */
  readonly stride: number;
  /** Chunks by increasing start and strictly increasing end; the last ends at L. */
  readonly chunks: readonly PlannedChunk[];
  /** chunks.length − 1 boundaries, boundary k − 1 between chunks k − 1 and k. */
  readonly boundaries: readonly ChunkBoundary[];
  /** True when the last chunk is the end-aligned extra chunk (L not reachable by regular chunks). */
  readonly tailAligned: boolean;
}

/**
 * Plans the stage-3 chunks over `length` latent frames (scheme in the module comment, spec §4.2, G10).
 *
 * @example
 * ```ts
 * planStage3Chunks({ length: 72 }).chunks.map((c) => c.start); // [0, 16, 32, 48] (official)
 * planStage3Chunks({ length: 80 }).chunks.map((c) => c.start); // [0, 16, 32, 48, 56]: tail overlap 16
 * planStage3Chunks({ length: 10 }).chunks;                      // [{ start: 0, end: 10, … }]
 * ```
 */
export function planStage3Chunks(options: Stage3PlanOptions): Stage3ChunkPlan {
  const length = expectInteger(options.length, 'length', 1);
  const chunkFrames = expectInteger(options.chunkFrames ?? DEFAULT_CHUNK_FRAMES, 'chunkFrames', 1);
  const overlapFrames = expectInteger(
    options.overlapFrames ?? DEFAULT_OVERLAP_FRAMES,
    'overlapFrames',
    0,
    `an integer in [0, ${chunkFrames - 1}]`,
  );
  if (overlapFrames >= chunkFrames) {
    throw new InvalidArgumentError(
      `Expected an integer in [0, ${chunkFrames - 1}] for \`overlapFrames\` but received ${overlapFrames}`,
    );
  }
  const stride = chunkFrames - overlapFrames;
  const starts: number[] = [];
  let tailAligned = false;
  if (length <= chunkFrames) {
    starts.push(0);
  } else {
    for (let s = 0; s + chunkFrames <= length; s += stride) starts.push(s);
    const lastEnd = starts[starts.length - 1]! + chunkFrames;
    if (lastEnd < length) {
      starts.push(length - chunkFrames); // end-aligned tail chunk, overlap in (O, C)
      tailAligned = true;
    }
  }
  const chunks = starts.map((start, index) =>
    Object.freeze({ index, start, end: Math.min(start + chunkFrames, length), length: Math.min(chunkFrames, length - start) }),
  );
  const boundaries: ChunkBoundary[] = [];
  for (let k = 1; k < chunks.length; k++) {
    const prev = chunks[k - 1]!;
    const cur = chunks[k]!;
    boundaries.push(Object.freeze({ index: k, start: cur.start, end: prev.end, overlap: prev.end - cur.start }));
  }
  return Object.freeze({
    length,
    chunkFrames,
    overlapFrames,
    stride,
    chunks: Object.freeze(chunks),
    boundaries: Object.freeze(boundaries),
    tailAligned,
  });
}
