/**
 * {@link PngSequenceSink}: one PNG file per frame, written as frames arrive.
 *
 * @module
 */
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DisposedError, InvalidArgumentError } from '../errors.js';
import type { FrameSink } from './frame-sink.js';
import { encodePng, type PngOptions } from './png.js';
import { acceptsFrame, type StageFilterOptions, type VideoFrame } from './video-frame.js';

/** Options of {@link PngSequenceSink}. */
export interface PngSequenceSinkOptions extends StageFilterOptions {
  /** Directory for the files; created (recursively) on the first frame. Required. @example `'results/clip-png'` */
  readonly dir: string;
  /** File name prefix. Default: `'frame_'`. */
  readonly prefix?: string | undefined;
  /** Zero-padded digits of the frame index in the name. Default: 6 (`frame_000000.png`). */
  readonly digits?: number | undefined;
  /** Encoder options (filter, zlib level). Default: `{ filter: 'up', level: 6 }`. */
  readonly png?: PngOptions | undefined;
}

/**
 * Writes each frame to `<dir>/<prefix><index>.png` (e.g. `frame_000000.png`, named by {@link VideoFrame.index}).
 * Each file is written under a temporary name and renamed, so an abort or crash never leaves a truncated PNG: every
 * file present is a complete frame. Frames may be written concurrently (each `write` is independent).
 *
 * @example
 * ```ts
 * const sink = new PngSequenceSink({ dir: 'results/clip-png', stage: 'final' });
 * await sink.write(frame);   // results/clip-png/frame_000000.png
 * await sink.close();
 * ```
 */
export class PngSequenceSink implements FrameSink {
  /** The output directory. */
  readonly dir: string;
  readonly #options: PngSequenceSinkOptions;
  readonly #digits: number;
  readonly #inFlight = new Set<Promise<unknown>>();
  #mkdir: Promise<unknown> | undefined;
  #framesWritten = 0;
  #state: 'open' | 'closed' | 'aborted' = 'open';

  constructor(options: PngSequenceSinkOptions) {
    if (typeof options?.dir !== 'string' || options.dir === '') {
      throw new InvalidArgumentError(`Expected a non-empty directory path for \`dir\` but received ${JSON.stringify(options?.dir)}`);
    }
    const digits = options.digits ?? 6;
    if (!Number.isInteger(digits) || digits < 1 || digits > 12) {
      throw new InvalidArgumentError(`Expected an integer in [1, 12] for \`digits\` but received ${String(options.digits)}`);
    }
    if (options.prefix !== undefined && (typeof options.prefix !== 'string' || /[/\\]/.test(options.prefix))) {
      throw new InvalidArgumentError(`Expected a file name prefix without slashes for \`prefix\` but received ${JSON.stringify(options.prefix)}`);
    }
    this.dir = options.dir;
    this.#digits = digits;
    this.#options = options;
  }

  /** Frames whose PNG file is complete. */
  get framesWritten(): number {
    return this.#framesWritten;
  }

  /** The path the frame with this index is written to. */
  fileFor(index: number): string {
    return join(this.dir, `${this.#options.prefix ?? 'frame_'}${String(index).padStart(this.#digits, '0')}.png`);
  }

  async write(frame: VideoFrame): Promise<void> {
    if (this.#state !== 'open') throw new DisposedError(`${String(this)}.write() after close() or abort(): it was disposed`);
    if (!acceptsFrame(frame, this.#options.stage)) return;
    const task = this.#writeFrame(frame);
    this.#inFlight.add(task);
    try {
      await task;
    } finally {
      this.#inFlight.delete(task);
    }
  }

  async #writeFrame(frame: VideoFrame): Promise<void> {
    this.#mkdir ??= mkdir(this.dir, { recursive: true });
    const [png] = await Promise.all([encodePng(frame.data, frame.width, frame.height, this.#options.png), this.#mkdir]);
    const file = this.fileFor(frame.index);
    const temp = `${file}.${process.pid}.tmp`;
    try {
      await writeFile(temp, png);
      await rename(temp, file);
    } catch (error) {
      await rm(temp, { force: true }).catch(() => undefined);
      throw error;
    }
    this.#framesWritten++;
  }

  /** Waits for the frames in flight; rejects if one failed to write. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    const results = await Promise.allSettled([...this.#inFlight]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  /** Stops taking frames and waits for those in flight to settle; complete files stay. */
  async abort(): Promise<void> {
    this.#state = 'aborted';
    await Promise.allSettled([...this.#inFlight]);
  }

  toString(): string {
    return `PngSequenceSink(${this.dir})`;
  }
}
