/**
 * {@link Mp4Writer}: streams RGB24 frames into an H.264 MP4 through the system ffmpeg, progressively.
 *
 * The file is a fragmented MP4 (`-movflags frag_keyframe+empty_moov+default_base_moof`) with a keyframe every
 * `keyframeInterval` frames, so each GOP is written as a self-contained fragment as soon as it is encoded. A file cut
 * at any moment (abort, crash, SIGKILL of this process or of ffmpeg) plays up to its last complete fragment.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DisposedError, InvalidArgumentError } from '../errors.js';
import { FfmpegError, FfmpegNotFoundError } from './errors.js';
import { locateFfmpeg, type LocateFfmpegOptions } from './ffmpeg.js';

/** x264 speed/compression presets, fastest first. */
export type X264Preset =
  | 'ultrafast' | 'superfast' | 'veryfast' | 'faster' | 'fast' | 'medium' | 'slow' | 'slower' | 'veryslow' | 'placebo';

const PRESETS: readonly X264Preset[] = [
  'ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow', 'slower', 'veryslow', 'placebo',
];

/** Options of {@link Mp4Writer.open}. */
export interface Mp4WriterOptions extends LocateFfmpegOptions {
  /** Output file; created or overwritten (its directory is created if needed). Required. @example `'results/preview.mp4'` */
  readonly path: string;
  /**
   * Frame width in pixels (positive integer). An odd width is padded to even with ONE black column on the RIGHT
   * (yuv420p needs even sizes); the input frames keep the given width. Required.
   */
  readonly width: number;
  /** Frame height in pixels (positive integer). An odd height is padded with ONE black row at the BOTTOM. Required. */
  readonly height: number;
  /**
   * Frames per second of the output. Default: 8 (the StreamingT2V stage-2 preview rate, spec G9).
   * @example `{ fps: 24 }`
   */
  readonly fps?: number | undefined;
  /** x264 constant rate factor, 0 (lossless) to 51 (worst). Default: 18 (visually near-lossless). */
  readonly crf?: number | undefined;
  /** x264 preset. Default: `'medium'`. @example `{ preset: 'veryfast' }` */
  readonly preset?: X264Preset | undefined;
  /**
   * Frames per GOP (one keyframe, hence one MP4 fragment, per interval). Smaller means less video lost when the file
   * is cut, at a small size cost. Default: `Math.round(fps)` (one fragment per second).
   */
  readonly keyframeInterval?: number | undefined;
  /**
   * Milliseconds {@link Mp4Writer.abort} lets ffmpeg finish after closing its input before it sends SIGKILL.
   * Default: 2000.
   */
  readonly killGraceMs?: number | undefined;
  /** Aborts the writer ({@link Mp4Writer.abort}) when it fires. Default: none. */
  readonly signal?: AbortSignal | undefined;
}

/** Result of {@link Mp4Writer.close} and {@link Mp4Writer.abort}. */
export interface Mp4WriterResult {
  /** The output file. */
  readonly path: string;
  /** Frames fully handed to ffmpeg. After an abort, the file may hold fewer (only complete fragments survive a kill). */
  readonly frames: number;
  /** Size of the output file in bytes (0 when it does not exist). */
  readonly bytes: number;
  /** True after a successful {@link Mp4Writer.close}; false after an abort. */
  readonly complete: boolean;
}

const STDERR_LINES = 30;

function positiveInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new InvalidArgumentError(`Expected a positive integer for \`${name}\` but received ${String(value)}`);
  }
  return value;
}

/**
 * The ffmpeg arguments {@link Mp4Writer} uses: rawvideo rgb24 on stdin, optional even-size padding, libx264 yuv420p,
 * fixed GOP, fragmented MP4. Options are assumed valid.
 * @internal
 */
export function mp4EncoderArgs(options: Mp4WriterOptions): string[] {
  const { width, height } = options;
  const fps = options.fps ?? 8;
  const [outW, outH] = [width + (width % 2), height + (height % 2)];
  const gop = options.keyframeInterval ?? Math.max(1, Math.round(fps));
  return [
    '-hide_banner', '-nostats', '-loglevel', 'info', '-y',
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-framerate', String(fps),
    '-i', 'pipe:0',
    ...(outW !== width || outH !== height ? ['-vf', `pad=${outW}:${outH}:0:0:black`] : []),
    '-an', '-c:v', 'libx264', '-preset', options.preset ?? 'medium', '-crf', String(options.crf ?? 18),
    '-pix_fmt', 'yuv420p', '-g', String(gop), '-keyint_min', String(gop),
    '-movflags', '+frag_keyframe+empty_moov+default_base_moof', '-flush_packets', '1',
    '-f', 'mp4', options.path,
  ];
}

/**
 * Writes RGB24 frames to an H.264/yuv420p fragmented MP4 by piping them into ffmpeg's stdin.
 *
 * - {@link write} resolves once ffmpeg's pipe has taken the frame (backpressure: when ffmpeg is slower than the
 *   producer the promise stays pending). Do not modify the frame's bytes until it resolves.
 * - {@link close} finalises the file; {@link abort} stops ffmpeg (end of input, then SIGKILL after `killGraceMs`) and keeps
 *   the partial, playable file. Neither leaves a child process behind.
 * - If ffmpeg dies early, the next {@link write} / {@link close} rejects with {@link FfmpegError} carrying its stderr.
 *
 * @example
 * ```ts
 * await using writer = await Mp4Writer.open({ path: 'out.mp4', width: 256, height: 256, fps: 8 });
 * for (const frame of frames) await writer.write(frame); // Uint8Array, 256*256*3 bytes each
 * const { frames, bytes } = await writer.close();
 * ```
 */
export class Mp4Writer implements AsyncDisposable {
  /** The output file. */
  readonly path: string;
  /** Width of the input frames. */
  readonly width: number;
  /** Height of the input frames. */
  readonly height: number;
  /** Width of the encoded video (`width` rounded up to even). */
  readonly outputWidth: number;
  /** Height of the encoded video (`height` rounded up to even). */
  readonly outputHeight: number;
  /** Output frames per second. */
  readonly fps: number;
  /** The ffmpeg binary used. */
  readonly ffmpegPath: string;
  /** The ffmpeg arguments used. */
  readonly args: readonly string[];

  readonly #child: ChildProcess;
  readonly #frameBytes: number;
  readonly #killGraceMs: number;
  readonly #exited: Promise<void>;
  #stderrLines: string[] = [];
  #stderrPartial = '';
  #framesWritten = 0;
  #backpressureWaits = 0;
  #spawnError: Error | undefined;
  #failure: FfmpegError | FfmpegNotFoundError | undefined;
  #state: 'open' | 'closing' | 'aborting' | 'done' = 'open';
  #closePromise: Promise<Mp4WriterResult> | undefined;
  #abortPromise: Promise<Mp4WriterResult> | undefined;
  #removeAbortListener: (() => void) | undefined;

  /** @internal Use {@link Mp4Writer.open}. */
  private constructor(options: Mp4WriterOptions, ffmpegPath: string) {
    this.path = options.path;
    this.width = options.width;
    this.height = options.height;
    this.outputWidth = options.width + (options.width % 2);
    this.outputHeight = options.height + (options.height % 2);
    this.fps = options.fps ?? 8;
    this.ffmpegPath = ffmpegPath;
    this.#frameBytes = this.width * this.height * 3;
    this.#killGraceMs = options.killGraceMs ?? 2000;
    this.args = mp4EncoderArgs(options);
    // detached: ffmpeg gets its own process group, so a terminal Ctrl-C (SIGINT to the whole group) does not
    // kill it before we close its input; it then finishes the frames it has. If our process dies, its stdin
    // closes and it exits on its own.
    this.#child = spawn(ffmpegPath, this.args, { stdio: ['pipe', 'ignore', 'pipe'], windowsHide: true, detached: true });
    this.#exited = new Promise((resolveExit) => {
      // `on`, not `once`: a later 'error' (e.g. a failed kill) must not become an uncaught exception.
      this.#child.on('error', (error) => {
        if (this.#child.pid !== undefined) return;
        this.#spawnError ??= error;
        // 'close' may not follow a spawn failure; settle here too.
        resolveExit();
      });
      this.#child.once('close', () => resolveExit());
    });
    void this.#exited.then(() => this.#onExit());
    this.#child.stderr?.setEncoding('utf8');
    this.#child.stderr?.on('data', (text: string) => this.#collectStderr(text));
    // Errors on stdin (EPIPE when ffmpeg dies) surface through write callbacks and #onExit; never crash the process.
    this.#child.stdin?.on('error', () => undefined);
    if (options.signal !== undefined) {
      const onAbort = (): void => void this.abort().catch(() => undefined);
      if (options.signal.aborted) queueMicrotask(onAbort);
      else {
        options.signal.addEventListener('abort', onAbort, { once: true });
        const signal = options.signal;
        this.#removeAbortListener = () => signal.removeEventListener('abort', onAbort);
      }
    }
  }

  /**
   * Locates ffmpeg (see {@link locateFfmpeg}), checks it has libx264, validates the options and starts encoding.
   *
   * @throws {@link InvalidArgumentError} for a bad option.
   * @throws {@link FfmpegNotFoundError} when no usable ffmpeg exists or it lacks libx264.
   */
  static async open(options: Mp4WriterOptions): Promise<Mp4Writer> {
    Mp4Writer.#validate(options);
    const ffmpeg = await locateFfmpeg(options);
    if (!ffmpeg.hasLibx264) {
      throw new FfmpegNotFoundError([`${ffmpeg.source}: ${ffmpeg.path}: version ${ffmpeg.version} was built without libx264`], {
        reason: 'The ffmpeg found cannot encode H.264 (no libx264).',
      });
    }
    await mkdir(dirname(options.path), { recursive: true });
    return new Mp4Writer(options, ffmpeg.path);
  }

  static #validate(options: Mp4WriterOptions): void {
    if (typeof options?.path !== 'string' || options.path === '') {
      throw new InvalidArgumentError(`Expected a non-empty file path for \`path\` but received ${JSON.stringify(options?.path)}`);
    }
    positiveInteger(options.width, 'width');
    positiveInteger(options.height, 'height');
    const { fps, crf, preset, keyframeInterval, killGraceMs } = options;
    if (fps !== undefined && !(typeof fps === 'number' && Number.isFinite(fps) && fps > 0 && fps <= 1000)) {
      throw new InvalidArgumentError(`Expected a number in (0, 1000] for \`fps\` but received ${String(fps)}`);
    }
    if (crf !== undefined && !(typeof crf === 'number' && Number.isFinite(crf) && crf >= 0 && crf <= 51)) {
      throw new InvalidArgumentError(`Expected a number in [0, 51] for \`crf\` but received ${String(crf)}`);
    }
    if (preset !== undefined && !PRESETS.includes(preset)) {
      throw new InvalidArgumentError(`Expected one of ${PRESETS.join(', ')} for \`preset\` but received ${JSON.stringify(preset)}`);
    }
    if (keyframeInterval !== undefined) positiveInteger(keyframeInterval, 'keyframeInterval');
    if (killGraceMs !== undefined && !(typeof killGraceMs === 'number' && Number.isFinite(killGraceMs) && killGraceMs >= 0)) {
      throw new InvalidArgumentError(`Expected a non-negative number for \`killGraceMs\` but received ${String(killGraceMs)}`);
    }
  }

  /** Process id of ffmpeg (undefined if it could not be spawned). */
  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Frames fully handed to ffmpeg so far. */
  get framesWritten(): number {
    return this.#framesWritten;
  }

  /** How many writes found the pipe full and had to wait for ffmpeg to drain it. */
  get backpressureWaits(): number {
    return this.#backpressureWaits;
  }

  /** True once ffmpeg has exited (after close, abort or a failure). */
  get exited(): boolean {
    return this.#child.exitCode !== null || this.#child.signalCode !== null || this.#spawnError !== undefined;
  }

  /** ffmpeg's last stderr lines so far. */
  get stderrTail(): string {
    return [...this.#stderrLines, this.#stderrPartial].filter((l) => l !== '').join('\n');
  }

  /**
   * Sends one frame: `width * height * 3` bytes of RGB24, rows top to bottom. Resolves when ffmpeg's pipe has taken
   * it; stays pending while the pipe is full (backpressure).
   *
   * @throws {@link InvalidArgumentError} for a frame of the wrong size.
   * @throws {@link FfmpegError} when ffmpeg has died (with its stderr).
   * @throws {@link DisposedError} after {@link close} or {@link abort}.
   */
  async write(frame: Uint8Array): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#state !== 'open') throw new DisposedError(`Mp4Writer(${this.path}).write() after close() or abort(): it was disposed`);
    if (!(frame instanceof Uint8Array) || frame.length !== this.#frameBytes) {
      throw new InvalidArgumentError(
        `Expected a Uint8Array of ${this.#frameBytes} bytes (${this.width}x${this.height} RGB24) for \`frame\` but received ` +
          (frame instanceof Uint8Array ? `${frame.length} bytes` : String(frame)),
      );
    }
    const stdin = this.#child.stdin;
    if (stdin === null || this.exited || stdin.destroyed) throw await this.#failureAfterExit('ffmpeg stopped accepting frames');
    let writeError: Error | null | undefined;
    const flushed = new Promise<void>((resolveWrite) => {
      const ok = stdin.write(frame, (error) => {
        writeError = error;
        resolveWrite();
      });
      if (!ok) this.#backpressureWaits++;
    });
    await flushed;
    if (writeError !== null && writeError !== undefined) {
      if (this.#abortPromise !== undefined) {
        throw new DisposedError(`Mp4Writer(${this.path}).write() interrupted by abort(): it was disposed`, { cause: writeError });
      }
      throw await this.#failureAfterExit('ffmpeg stopped accepting frames', writeError);
    }
    this.#framesWritten++;
  }

  /**
   * Ends the input and waits for ffmpeg to finish the file. Idempotent (later calls return the same promise).
   *
   * @throws {@link FfmpegError} when ffmpeg fails (with its stderr); the file is left as ffmpeg wrote it.
   */
  close(): Promise<Mp4WriterResult> {
    if (this.#closePromise !== undefined) return this.#closePromise;
    if (this.#abortPromise !== undefined) return Promise.reject(new DisposedError(`Mp4Writer(${this.path}).close() after abort(): it was disposed`));
    this.#state = 'closing';
    this.#closePromise = (async () => {
      if (this.#failure !== undefined) {
        this.#state = 'done';
        throw this.#failure;
      }
      this.#child.stdin?.end();
      await this.#exited;
      this.#state = 'done';
      if (this.#spawnError !== undefined || this.#child.exitCode !== 0) throw this.#makeFailure('ffmpeg failed to finish the file');
      return { path: this.path, frames: this.#framesWritten, bytes: await this.#fileSize(), complete: true };
    })();
    return this.#closePromise;
  }

  /**
   * Stops encoding now: drops the frames not yet handed to ffmpeg and closes its input, so it encodes and writes what
   * it already has (normally well under a second), then SIGKILLs it if it is still running after `killGraceMs`.
   * Resolves once the process is gone (reaped); the partial file stays and is playable up to its last complete
   * fragment. Pending writes reject with {@link DisposedError}. Never rejects; idempotent.
   */
  abort(): Promise<Mp4WriterResult> {
    if (this.#abortPromise !== undefined) return this.#abortPromise;
    const closing = this.#closePromise;
    this.#state = 'aborting';
    this.#abortPromise = (async () => {
      if (!this.exited) {
        // EOF, not SIGTERM: a SIGTERM during ffmpeg's start-up makes it exit before it has written anything.
        this.#child.stdin?.destroy();
        const timer = setTimeout(() => {
          if (!this.exited) this.#child.kill('SIGKILL');
        }, this.#killGraceMs);
        await this.#exited;
        clearTimeout(timer);
      }
      const closed = closing === undefined ? undefined : await closing.catch(() => undefined);
      this.#state = 'done';
      if (closed !== undefined) return closed;
      return { path: this.path, frames: this.#framesWritten, bytes: await this.#fileSize(), complete: false };
    })();
    return this.#abortPromise;
  }

  /** Aborts unless {@link close} was called, in which case it waits for the close (its error is rethrown). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closePromise !== undefined && this.#abortPromise === undefined) {
      await this.#closePromise;
      return;
    }
    await this.abort();
  }

  #collectStderr(text: string): void {
    const parts = (this.#stderrPartial + text).split(/\r?\n|\r/);
    this.#stderrPartial = parts.pop() ?? '';
    for (const line of parts) if (line.trim() !== '') this.#stderrLines.push(line);
    if (this.#stderrLines.length > STDERR_LINES) this.#stderrLines.splice(0, this.#stderrLines.length - STDERR_LINES);
    if (this.#stderrPartial.length > 4096) this.#stderrPartial = this.#stderrPartial.slice(-4096);
  }

  #onExit(): void {
    this.#removeAbortListener?.();
    const unexpected = this.#state === 'open' && this.#failure === undefined;
    if (unexpected) this.#failure = this.#makeFailure('ffmpeg exited while frames were still being written');
  }

  #makeFailure(summary: string, cause?: unknown): FfmpegError | FfmpegNotFoundError {
    if (this.#spawnError !== undefined) {
      return new FfmpegNotFoundError([`${this.ffmpegPath}: spawn failed: ${this.#spawnError.message}`], { cause: this.#spawnError });
    }
    return new FfmpegError(
      summary,
      {
        ffmpegPath: this.ffmpegPath,
        args: this.args,
        pid: this.#child.pid,
        exitCode: this.#child.exitCode,
        signal: this.#child.signalCode,
        stderrTail: this.stderrTail,
        outputPath: this.path,
        framesWritten: this.#framesWritten,
      },
      { cause },
    );
  }

  /** After a pipe error: wait (bounded) for ffmpeg to exit so its stderr and status are known, then build the error. */
  async #failureAfterExit(summary: string, cause?: unknown): Promise<FfmpegError | FfmpegNotFoundError> {
    if (this.#failure !== undefined) return this.#failure;
    if (!this.exited) {
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), this.#killGraceMs);
      await this.#exited;
      clearTimeout(timer);
    }
    this.#failure ??= this.#makeFailure(summary, cause);
    return this.#failure;
  }

  async #fileSize(): Promise<number> {
    try {
      return (await stat(this.path)).size;
    } catch {
      return 0;
    }
  }
}
