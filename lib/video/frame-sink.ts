/**
 * Frame sinks: where generated frames go as they arrive. {@link Mp4Sink} encodes an MP4, {@link PngSequenceSink}
 * writes one PNG per frame, {@link RawSink} appends raw RGB24 with a JSON sidecar, and {@link FanoutSink} feeds
 * several at once and keeps going when one fails, so a missing or crashing ffmpeg never loses the frames.
 *
 * @module
 */
import { DisposedError, InvalidArgumentError } from '../errors.js';
import { FrameSinkError, type SinkFailure } from './errors.js';
import { Mp4Writer, type Mp4WriterOptions, type Mp4WriterResult } from './mp4-writer.js';
import { acceptsFrame, checkSameSize, validateVideoFrame, type StageFilterOptions, type VideoFrame } from './video-frame.js';

export { validateVideoFrame, type StageFilterOptions, type VideoFrame, type VideoStage } from './video-frame.js';

/**
 * A destination for frames. Call {@link write} once per frame (awaiting it honours backpressure), then {@link close}
 * to finish, or {@link abort} to stop early keeping what was written.
 */
export interface FrameSink {
  /** Takes one frame; resolves when the sink can take the next. The frame's bytes must not change until then. */
  write(frame: VideoFrame): Promise<void>;
  /** Finishes the output; rejects if it cannot be completed. */
  close(): Promise<void>;
  /** Stops now, keeping what was written so far. Never rejects. */
  abort(): Promise<void>;
}

/** Options of {@link Mp4Sink}: those of {@link Mp4Writer} except the size, which the first frame gives. */
export interface Mp4SinkOptions extends Omit<Mp4WriterOptions, 'width' | 'height'>, StageFilterOptions {}

/**
 * Encodes frames into an MP4 with {@link Mp4Writer}. ffmpeg is located and started on the first frame, whose size
 * fixes the video size. To learn early that ffmpeg is missing, call `locateFfmpeg()` before generating.
 *
 * @example
 * ```ts
 * const preview = new Mp4Sink({ path: 'results/clip.mp4', fps: 8, stage: 'preview' });
 * for await (const frame of frames) await preview.write(frame);
 * await preview.close(); // preview.result => { path, frames, bytes, complete: true }
 * ```
 */
export class Mp4Sink implements FrameSink {
  readonly options: Mp4SinkOptions;
  #writer: Promise<Mp4Writer> | undefined;
  #result: Mp4WriterResult | undefined;
  #state: 'open' | 'closed' | 'aborted' = 'open';

  constructor(options: Mp4SinkOptions) {
    if (typeof options?.path !== 'string' || options.path === '') {
      throw new InvalidArgumentError(`Expected a non-empty file path for \`path\` but received ${JSON.stringify(options?.path)}`);
    }
    this.options = options;
  }

  /** The writer's result after {@link close} or {@link abort}; undefined before, or when no frame ever arrived. */
  get result(): Mp4WriterResult | undefined {
    return this.#result;
  }

  /** The underlying writer, once the first frame has started it. */
  get writer(): Promise<Mp4Writer> | undefined {
    return this.#writer;
  }

  async write(frame: VideoFrame): Promise<void> {
    if (this.#state !== 'open') throw new DisposedError(`${String(this)}.write() after close() or abort(): it was disposed`);
    if (!acceptsFrame(frame, this.options.stage)) return;
    this.#writer ??= Mp4Writer.open({ ...this.options, width: frame.width, height: frame.height });
    const writer = await this.#writer;
    checkSameSize(frame, writer.width, writer.height, String(this));
    await writer.write(frame.data);
  }

  async close(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'closed';
    if (this.#writer === undefined) return;
    this.#result = await (await this.#writer).close();
  }

  async abort(): Promise<void> {
    if (this.#state === 'aborted') return;
    this.#state = 'aborted';
    const writer = await this.#writer?.catch(() => undefined);
    if (writer !== undefined) this.#result = await writer.abort();
  }

  toString(): string {
    return `Mp4Sink(${this.options.path})`;
  }
}

/** Options of {@link FanoutSink}. */
export interface FanoutSinkOptions {
  /**
   * When true, the first failing sink makes {@link FanoutSink.write} reject and aborts every sink. When false, a
   * failing sink is aborted and dropped while the others continue; {@link FanoutSink.close} then rejects with a
   * {@link FrameSinkError} listing the failures. Default: false.
   */
  readonly failFast?: boolean | undefined;
  /**
   * Called at once when a sink fails (before {@link FanoutSink.close} reports it), e.g. to log that the MP4 is lost
   * but the PNGs continue. Default: none.
   * @example `{ onSinkError: (error, sink) => console.warn(String(sink), error) }`
   */
  readonly onSinkError?: ((error: unknown, sink: FrameSink) => void) | undefined;
}

function describeSink(sink: FrameSink): string {
  const text = String(sink);
  return text === '[object Object]' ? sink.constructor.name : text;
}

/**
 * Writes every frame to several sinks concurrently. By default a sink that fails (e.g. ffmpeg missing or killed) is
 * aborted and dropped, and the others keep receiving frames; the failure is reported by `onSinkError` at once and
 * by {@link close} as a {@link FrameSinkError}. {@link write} rejects only when no sink is left.
 *
 * @example
 * ```ts
 * const sink = new FanoutSink([
 *   new Mp4Sink({ path: 'out/preview.mp4', stage: 'preview' }),
 *   new PngSequenceSink({ dir: 'out/preview-png', stage: 'preview' }),
 * ]);
 * ```
 */
export class FanoutSink implements FrameSink {
  readonly #live: FrameSink[];
  readonly #all: readonly FrameSink[];
  readonly #failures: SinkFailure[] = [];
  readonly #options: FanoutSinkOptions;
  #closed = false;

  constructor(sinks: readonly FrameSink[], options: FanoutSinkOptions = {}) {
    if (!Array.isArray(sinks) || sinks.length === 0 || sinks.some((s) => typeof s?.write !== 'function')) {
      throw new InvalidArgumentError(`Expected a non-empty array of FrameSinks for \`sinks\` but received ${String(sinks)}`);
    }
    this.#all = [...sinks];
    this.#live = [...sinks];
    this.#options = options;
  }

  /** Failures so far. */
  get failures(): readonly SinkFailure[] {
    return this.#failures;
  }

  /** Sinks still receiving frames. */
  get liveSinks(): readonly FrameSink[] {
    return [...this.#live];
  }

  async write(frame: VideoFrame): Promise<void> {
    if (this.#closed) throw new DisposedError(`${String(this)}.write() after close() or abort(): it was disposed`);
    validateVideoFrame(frame);
    if (this.#live.length === 0) throw new FrameSinkError(this.#failures, []);
    const sinks = [...this.#live];
    const results = await Promise.allSettled(sinks.map((s) => s.write(frame)));
    const failed = await this.#drop(sinks, results);
    if (failed && this.#options.failFast === true) {
      await this.abort();
      throw new FrameSinkError(this.#failures, []);
    }
    if (this.#live.length === 0) throw new FrameSinkError(this.#failures, []);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const sinks = [...this.#live];
    await this.#drop(sinks, await Promise.allSettled(sinks.map((s) => s.close())));
    if (this.#failures.length > 0) throw new FrameSinkError(this.#failures, this.#live.map(describeSink));
  }

  async abort(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled(this.#all.map((s) => s.abort()));
  }

  toString(): string {
    return `FanoutSink(${this.#all.map(describeSink).join(', ')})`;
  }

  /** Records failures, removes and aborts the failed sinks; true if any failed. */
  async #drop(sinks: readonly FrameSink[], results: readonly PromiseSettledResult<void>[]): Promise<boolean> {
    const failed: FrameSink[] = [];
    results.forEach((result, i) => {
      const sink = sinks[i] as FrameSink;
      if (result.status === 'fulfilled' || !this.#live.includes(sink)) return;
      this.#live.splice(this.#live.indexOf(sink), 1);
      this.#failures.push({ sink: describeSink(sink), error: result.reason });
      failed.push(sink);
      try {
        this.#options.onSinkError?.(result.reason, sink);
      } catch (error) {
        console.error('streamingt2v: onSinkError threw', error);
      }
    });
    await Promise.allSettled(failed.map((s) => s.abort()));
    return failed.length > 0;
  }
}

export { PngSequenceSink, type PngSequenceSinkOptions } from './png-sink.js';
export { RawSink, type RawSinkOptions, type RawSidecar } from './raw-sink.js';
