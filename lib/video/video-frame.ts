/**
 * The {@link VideoFrame} type and the checks every sink applies to it.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';

/** Which output a frame belongs to: the stage-2 preview (256², 8 fps) or the stage-3 enhanced final video. */
export type VideoStage = 'preview' | 'final';

/** One RGB24 video frame. */
export interface VideoFrame {
  /** Position of the frame in its video, from 0. */
  readonly index: number;
  /** The output it belongs to. */
  readonly stage: VideoStage;
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** RGB24 pixels, rows top to bottom; length `width * height * 3`. */
  readonly data: Uint8Array;
}

/** Options shared by the file sinks. */
export interface StageFilterOptions {
  /**
   * Only frames of this stage are written; frames of the other stage are ignored (their `write` resolves at once).
   * Default: unset (every frame is written).
   * @example `{ stage: 'preview' }`
   */
  readonly stage?: VideoStage | undefined;
}

/**
 * Checks a {@link VideoFrame}'s fields and data length.
 * @throws {@link InvalidArgumentError} naming the bad field.
 */
export function validateVideoFrame(frame: VideoFrame): void {
  if (typeof frame !== 'object' || frame === null) {
    throw new InvalidArgumentError(`Expected a VideoFrame object for \`frame\` but received ${String(frame)}`);
  }
  for (const key of ['width', 'height'] as const) {
    if (!Number.isInteger(frame[key]) || frame[key] <= 0) {
      throw new InvalidArgumentError(`Expected a positive integer for \`frame.${key}\` but received ${String(frame[key])}`);
    }
  }
  if (!Number.isInteger(frame.index) || frame.index < 0) {
    throw new InvalidArgumentError(`Expected a non-negative integer for \`frame.index\` but received ${String(frame.index)}`);
  }
  if (frame.stage !== 'preview' && frame.stage !== 'final') {
    throw new InvalidArgumentError(`Expected 'preview' or 'final' for \`frame.stage\` but received ${JSON.stringify(frame.stage)}`);
  }
  const expected = frame.width * frame.height * 3;
  if (!(frame.data instanceof Uint8Array) || frame.data.length !== expected) {
    throw new InvalidArgumentError(
      `Expected a Uint8Array of ${expected} bytes (${frame.width}x${frame.height} RGB24) for \`frame.data\` but received ` +
        (frame.data instanceof Uint8Array ? `${frame.data.length} bytes` : String(frame.data)),
    );
  }
}

/** Validates and says whether a sink with this stage filter takes the frame. @internal */
export function acceptsFrame(frame: VideoFrame, stage: VideoStage | undefined): boolean {
  validateVideoFrame(frame);
  return stage === undefined || frame.stage === stage;
}

/** Checks that a frame has the size a sink fixed on its first frame. @internal */
export function checkSameSize(frame: VideoFrame, width: number, height: number, sink: string): void {
  if (frame.width !== width || frame.height !== height) {
    throw new InvalidArgumentError(
      `Expected ${width}x${height} (the size of the first frame) for the size of frame ${frame.index} in ${sink} but received ${frame.width}x${frame.height}`,
    );
  }
}

