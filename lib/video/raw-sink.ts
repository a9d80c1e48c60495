/**
 * {@link RawSink}: raw RGB24 frames appended to one file, described by a JSON sidecar. The format every tool reads
 * (`ffmpeg -f rawvideo`), and the fallback that needs nothing installed.
 *
 * @module
 */
import { mkdir, open, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DisposedError, InvalidArgumentError } from '../errors.js';
import type { FrameSink } from './frame-sink.js';
import { acceptsFrame, checkSameSize, type StageFilterOptions, type VideoFrame } from './video-frame.js';

/** Options of {@link RawSink}. */
export interface RawSinkOptions extends StageFilterOptions {
  /**
   * The raw file; created or truncated on the first frame (its directory is created if needed). The sidecar is
   * `<path>.json`. Required. @example `'out/clip.rgb'`
   */
  readonly path: string;
  /** Frame rate recorded in the sidecar. Default: 8 (the stage-2 preview rate). */
  readonly fps?: number | undefined;
}

/** Contents of the `<path>.json` sidecar of a {@link RawSink}. */
export interface RawSidecar {
  readonly format: 'rawvideo';
  readonly pixelFormat: 'rgb24';
  readonly width: number;
  readonly height: number;
  readonly fps: number;
  /** Bytes per frame (`width * height * 3`). */
  readonly frameBytes: number;
  /** Frames written when the sidecar was last updated. After a crash, use `floor(fileSize / frameBytes)`. */
  readonly frames: number;
  /** True once the sink was closed normally. */
  readonly complete: boolean;
  /** A command that turns the raw file into an MP4. */
  readonly ffmpegCommand: string;
}

/**
 * Appends each frame's RGB24 bytes to `path`, in the order `write` was called, and keeps `<path>.json` (a
 * {@link RawSidecar}) describing them. The sidecar is written on the first frame and on close/abort (atomically,
 * through a rename); the raw file's size is always a whole number of frames except for a frame cut by a crash.
 * All frames must have the size of the first.
 *
 * @example
 * ```ts
 * const raw = new RawSink({ path: 'out/clip.rgb', fps: 8 });
 * await raw.write(frame);
 * await raw.close();   // out/clip.rgb + out/clip.rgb.json
 * // ffmpeg -f rawvideo -pix_fmt rgb24 -s 256x256 -framerate 8 -i out/clip.rgb out/clip.mp4
 * ```
 */
export class RawSink implements FrameSink {
  /** The raw file. */
  readonly path: string;
  /** The sidecar file. */
  readonly sidecarPath: string;
  readonly #options: RawSinkOptions;
  readonly #inFlight = new Set<Promise<unknown>>();
  #handle: Promise<FileHandle> | undefined;
  #size: { width: number; height: number } | undefined;
  #queued = 0;
  #framesWritten = 0;
  #state: 'open' | 'closed' | 'aborted' = 'open';
  #finished: Promise<void> | undefined;

  constructor(options: RawSinkOptions) {
    if (typeof options?.path !== 'string' || options.path === '') {
      throw new InvalidArgumentError(`Expected a non-empty file path for \`path\` but received ${JSON.stringify(options?.path)}`);
    }
    const fps = options.fps ?? 8;
    if (typeof fps !== 'number' || !Number.isFinite(fps) || fps <= 0) {
      throw new InvalidArgumentError(`Expected a positive number for \`fps\` but received ${String(options.fps)}`);
    }
    this.path = options.path;
    this.sidecarPath = `${options.path}.json`;
    this.#options = options;
  }

  /** Frames whose bytes are in the file. */
  get framesWritten(): number {
    return this.#framesWritten;
  }

  /** The sidecar as it would be written now (undefined before the first frame). */
  get sidecar(): RawSidecar | undefined {
    if (this.#size === undefined) return undefined;
    const { width, height } = this.#size;
    const fps = this.#options.fps ?? 8;
    return {
      format: 'rawvideo',
      pixelFormat: 'rgb24',
      width,
      height,
      fps,
      frameBytes: width * height * 3,
      frames: this.#framesWritten,
      complete: this.#state === 'closed',
      ffmpegCommand: `ffmpeg -f rawvideo -pix_fmt rgb24 -s ${width}x${height} -framerate ${fps} -i ${JSON.stringify(this.path)} -c:v libx264 -pix_fmt yuv420p out.mp4`,
    };
  }

  async write(frame: VideoFrame): Promise<void> {
    if (this.#state !== 'open') throw new DisposedError(`${String(this)}.write() after close() or abort(): it was disposed`);
    if (!acceptsFrame(frame, this.#options.stage)) return;
    if (this.#size === undefined) {
      this.#size = { width: frame.width, height: frame.height };
      this.#handle = mkdir(dirname(this.path), { recursive: true }).then(async () => {
        const handle = await open(this.path, 'w');
        await this.#writeSidecar();
        return handle;
      });
    }
    checkSameSize(frame, this.#size.width, this.#size.height, String(this));
    // The position is fixed now, so concurrent writes still land in call order.
    const position = this.#queued * frame.data.length;
    this.#queued++;
    const task = (async () => {
      const handle = await (this.#handle as Promise<FileHandle>);
      let offset = 0;
      while (offset < frame.data.length) {
        const { bytesWritten } = await handle.write(frame.data, offset, frame.data.length - offset, position + offset);
        offset += bytesWritten;
      }
      this.#framesWritten++;
    })();
    this.#inFlight.add(task);
    try {
      await task;
    } finally {
      this.#inFlight.delete(task);
    }
  }

  /** Waits for pending frames, closes the file and writes the final sidecar (`complete: true`). */
  async close(): Promise<void> {
    if (this.#state === 'aborted') return;
    this.#state = 'closed';
    this.#finished ??= this.#finish();
    await this.#finished;
  }

  /** Stops taking frames, lets pending ones land, closes the file and writes the sidecar (`complete: false`). */
  async abort(): Promise<void> {
    if (this.#finished === undefined) this.#state = 'aborted';
    this.#finished ??= this.#finish();
    await this.#finished.catch(() => undefined);
  }

  toString(): string {
    return `RawSink(${this.path})`;
  }

  async #finish(): Promise<void> {
    const results = await Promise.allSettled([...this.#inFlight]);
    const handle = await this.#handle?.catch(() => undefined);
    await handle?.close();
    if (this.#size !== undefined) await this.#writeSidecar();
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  async #writeSidecar(): Promise<void> {
    const temp = `${this.sidecarPath}.${process.pid}.tmp`;
    await writeFile(temp, `${JSON.stringify(this.sidecar, null, 2)}\n`);
    await rename(temp, this.sidecarPath);
  }
}
