/**
 * Public value types of the pipeline: frames and progress events.
 * @module
 */

/** Which output a frame belongs to: the 256² stage-2 preview or the enhanced stage-3 video. */
export type FrameStage = 'preview' | 'final';

/** One generated frame, RGB24 interleaved (`data.length === width * height * 3`). */
export interface GeneratedFrame {
  /** 0-based frame index within its stage's video. */
  index: number;
  stage: FrameStage;
  width: number;
  height: number;
  /** RGB bytes, row-major. Owned by the consumer (never reused by the pipeline). */
  data: Uint8Array;
}

/** A pipeline phase reported by progress events. */
export type ProgressPhase = 'stage1' | 'stage2' | 'stage3-encode' | 'stage3' | 'stage3-decode';

/**
 * A non-fatal problem with a run's input, reported once, before any network call (`onWarning`; without one, as a
 * Node process warning of type `StreamingT2VWarning`).
 */
export interface StreamingT2VWarning {
  /**
   * Stable code. `PROMPT_OUTSIDE_VOCABULARY`: the prompt (or negative prompt) has words the model never saw in
   * training (a model with a closed vocabulary, manifest `prompt_words`, such as the embedded default model).
   */
  code: 'PROMPT_OUTSIDE_VOCABULARY';
  /** What happened and what it means, in one paragraph. */
  message: string;
  /** The words concerned, lowercase, in order. */
  words: readonly string[];
}

/** Emitted while a video is generated (`onProgress`). */
export interface ProgressEvent {
  phase: ProgressPhase;
  /** Stage-2 window index (1-based; 0 is stage 1), when relevant. */
  window?: number;
  /** Number of stage-2 windows in this run. */
  windows: number;
  /** 0-based sampler step within the current phase, when relevant. */
  step?: number;
  /** Sampler steps of the current phase. */
  steps?: number;
  /**
   * On the step events of a cut-guard retry (option `stage2.cutRetries`): 1 for the first retry of the window, absent
   * on its first sampling. A retry of window 1 (the stage-1 → stage-2 handover) runs stage 1 again first, so its
   * `stage1` step events (window 0) carry `attempt` too. Retries add no step-less event: one without `step` still
   * means a window is done.
   */
  attempt?: number;
  /** On the first step event of a retry: the score of the seam that looked like a cut (see `lib/pipeline/cut-guard.ts`). */
  seam?: { content: number; ratio: number };
  /** Preview frames produced so far. */
  framesDone: number;
  /** Final (enhanced) frames produced so far. */
  finalFramesDone: number;
  /** Frames requested. */
  totalFrames: number;
  /** Fraction of the whole run's estimated work done, in [0, 1] (steps back a little when a cut-guard retry adds work). */
  fraction: number;
  /** Milliseconds since the run started. */
  elapsedMs: number;
  /** Estimated milliseconds left (undefined until there is enough data). */
  etaMs?: number;
}
