/**
 * Progress accounting: counts network calls (the dominant cost) across stages and turns them into
 * a fraction and an ETA. Callback errors are caught and reported on stderr, never thrown into the
 * pipeline (a broken progress bar must not lose a video).
 * @module
 */
import type { ProgressEvent, ProgressPhase } from './types.js';

/** What the tracker needs from the resolved options. */
export interface ProgressPlan {
  numFrames: number;
  stage1: { steps: number };
  stage2: { steps: number };
  enhance: false | { steps: number; chunkFrames: number; overlapFrames: number };
}

export class ProgressTracker {
  readonly #start = performance.now();
  #total: number;
  readonly #windows: number;
  readonly #plan: ProgressPlan;
  readonly #callback: ((e: ProgressEvent) => void) | undefined;
  #done = 0;
  #skipped = 0;
  #framesDone = 0;
  #final = 0;
  /** The seam that made the cut guard retry, reported on the retry's first step event. */
  #retrySeam: { content: number; ratio: number } | undefined;

  constructor(plan: ProgressPlan, windows: number, callback: ((e: ProgressEvent) => void) | undefined) {
    this.#plan = plan;
    this.#windows = windows;
    this.#callback = callback;
    const e = plan.enhance;
    const chunks = e === false ? 0 : Math.max(1, Math.ceil((plan.numFrames - e.overlapFrames) / (e.chunkFrames - e.overlapFrames)));
    this.#total = plan.stage1.steps + windows * plan.stage2.steps + (e === false ? 0 : e.steps * chunks);
  }

  /** A resumed run: the skipped work counts as done but not towards the rate. */
  resumed(framesDone: number, nextWindow: number): void {
    this.#framesDone = framesDone;
    this.#skipped = this.#plan.stage1.steps + (nextWindow - 1) * this.#plan.stage2.steps;
    this.#done = this.#skipped;
  }

  /**
   * The cut guard samples a window again because `seam` looked like a cut: one more window of work, and one more
   * stage 1 when `withStage1` (a retry at the handover). The next step event reports the seam (no event of its own,
   * so a step-less event still means "a window is done").
   */
  retry(seam: { content: number; ratio: number }, withStage1: boolean): void {
    this.#total += this.#plan.stage2.steps + (withStage1 ? this.#plan.stage1.steps : 0);
    this.#retrySeam = { content: seam.content, ratio: seam.ratio };
  }

  step(phase: ProgressPhase, window: number, step: number, steps: number, attempt = 0): void {
    if (phase === 'stage3') {
      const e = this.#plan.enhance;
      const chunks = e === false ? 1 : Math.max(1, Math.ceil((this.#plan.numFrames - e.overlapFrames) / (e.chunkFrames - e.overlapFrames)));
      this.#done += chunks;
    } else {
      this.#done += 1;
    }
    const seam = this.#retrySeam;
    this.#retrySeam = undefined;
    this.#emit({ phase, window, step, steps, ...(attempt > 0 ? { attempt } : {}), ...(seam === undefined ? {} : { seam }) });
  }

  windowDone(window: number, framesDone: number): void {
    this.#framesDone = framesDone;
    this.#emit({ phase: window === 0 ? 'stage1' : 'stage2', window });
  }

  encode(done: number, total: number): void {
    this.#emit({ phase: 'stage3-encode', step: done, steps: total });
  }

  finalFrames(done: number, total: number): void {
    this.#final = done;
    this.#emit({ phase: 'stage3-decode', step: done, steps: total });
  }

  #emit(part: { phase: ProgressPhase; window?: number; step?: number; steps?: number; attempt?: number; seam?: { content: number; ratio: number } }): void {
    if (this.#callback === undefined) return;
    const elapsedMs = performance.now() - this.#start;
    const fraction = Math.min(1, this.#done / Math.max(1, this.#total));
    const worked = this.#done - this.#skipped;
    const rate = worked > 0 ? elapsedMs / worked : undefined;
    const event: ProgressEvent = {
      ...Object.fromEntries(Object.entries(part).filter(([, v]) => v !== undefined)),
      phase: part.phase,
      windows: this.#windows,
      framesDone: this.#framesDone,
      finalFramesDone: this.#final,
      totalFrames: this.#plan.numFrames,
      fraction,
      elapsedMs,
      ...(rate === undefined ? {} : { etaMs: rate * Math.max(0, this.#total - this.#done) }),
    };
    try {
      this.#callback(event);
    } catch (error) {
      console.error('streamingt2v: onProgress threw (ignored):', error);
    }
  }
}
