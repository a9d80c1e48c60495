/**
 * Errors of the video output layer. They extend {@link StreamingT2VError} from `lib/errors.ts`.
 *
 * | class | code | when |
 * |---|---|---|
 * | {@link FfmpegNotFoundError} | `ERR_FFMPEG_NOT_FOUND` | no usable ffmpeg: missing, not executable, not ffmpeg, or built without libx264 |
 * | {@link FfmpegError} | `ERR_FFMPEG` | ffmpeg exited, crashed or was killed while encoding |
 * | {@link FrameSinkError} | the first failure's code | one or more sinks of a {@link FanoutSink} failed |
 *
 * @module
 */
import { StreamingT2VError } from '../errors.js';

/** The apt command that installs a suitable ffmpeg (Debian/Ubuntu, with libx264). */
export const FFMPEG_INSTALL_HINT = 'sudo apt-get install -y --no-install-recommends ffmpeg';

/**
 * No usable ffmpeg was found. `tried` lists every candidate and why it was rejected; the message also says how to
 * fix it (install with apt, or point `ffmpegPath` / `STREAMINGT2V_FFMPEG` at a binary).
 *
 * @example
 * ```ts
 * try { await locateFfmpeg(); } catch (e) { if (e instanceof FfmpegNotFoundError) console.error(e.tried); }
 * ```
 */
export class FfmpegNotFoundError extends StreamingT2VError {
  /** Each candidate that was tried, e.g. `"option ffmpegPath=/opt/ffmpeg: ENOENT (no such file)"`. */
  readonly tried: readonly string[];

  constructor(tried: readonly string[], options?: { cause?: unknown; reason?: string }) {
    const lines = tried.length === 0 ? ['  (nothing)'] : tried.map((t) => `  - ${t}`);
    super(
      'ERR_FFMPEG_NOT_FOUND',
      [
        options?.reason ?? 'No usable ffmpeg was found.',
        'Tried:',
        ...lines,
        `Fix: install it (${FFMPEG_INSTALL_HINT}), or pass \`ffmpegPath\`, or set STREAMINGT2V_FFMPEG to an ffmpeg binary with libx264.`,
        'Frames are still available through a PngSequenceSink or RawSink.',
      ].join('\n'),
      { cause: options?.cause, nativeCall: 'ffmpeg' },
    );
    this.tried = tried;
  }
}

/** What {@link FfmpegError} knows about the failed ffmpeg process. */
export interface FfmpegFailure {
  /** The ffmpeg binary. */
  readonly ffmpegPath: string;
  /** Its arguments. */
  readonly args: readonly string[];
  /** The process id, when it was started. */
  readonly pid?: number | undefined;
  /** Exit code, or null when killed by a signal (or when it never ran). */
  readonly exitCode: number | null;
  /** The signal that ended it (e.g. `'SIGKILL'`), or null. */
  readonly signal: string | null;
  /** The last lines ffmpeg wrote to stderr (may be empty, e.g. after SIGKILL before any output). */
  readonly stderrTail: string;
  /** The output file. */
  readonly outputPath: string;
  /** Frames fully accepted by ffmpeg's stdin before the failure. */
  readonly framesWritten: number;
}

/**
 * ffmpeg failed while encoding: it exited non-zero, crashed, or was killed. The output file is left as it is; being a
 * fragmented MP4 it stays playable up to its last complete fragment. `stderrTail` holds ffmpeg's last stderr lines.
 */
export class FfmpegError extends StreamingT2VError implements FfmpegFailure {
  readonly ffmpegPath: string;
  readonly args: readonly string[];
  readonly pid?: number | undefined;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stderrTail: string;
  readonly outputPath: string;
  readonly framesWritten: number;

  constructor(summary: string, failure: FfmpegFailure, options?: { cause?: unknown }) {
    const how =
      failure.signal !== null
        ? `ffmpeg (pid ${failure.pid ?? '?'}) was killed by ${failure.signal}`
        : failure.exitCode !== null
          ? `ffmpeg (pid ${failure.pid ?? '?'}) exited with code ${failure.exitCode}`
          : 'ffmpeg did not run';
    const stderr = failure.stderrTail.trim() === '' ? '(no stderr output)' : failure.stderrTail.trimEnd();
    super(
      'ERR_FFMPEG',
      `${summary}: ${how} after ${failure.framesWritten} frame(s) of ${failure.outputPath}.\nffmpeg stderr (last lines):\n${stderr}`,
      { cause: options?.cause, nativeCall: 'ffmpeg' },
    );
    this.ffmpegPath = failure.ffmpegPath;
    this.args = failure.args;
    this.pid = failure.pid;
    this.exitCode = failure.exitCode;
    this.signal = failure.signal;
    this.stderrTail = failure.stderrTail;
    this.outputPath = failure.outputPath;
    this.framesWritten = failure.framesWritten;
  }
}

/** One failed sink of a {@link FrameSinkError}. */
export interface SinkFailure {
  /** A short description of the sink, e.g. `"Mp4Sink(out/preview.mp4)"`. */
  readonly sink: string;
  /** What it threw. */
  readonly error: unknown;
}

/**
 * One or more sinks of a FanoutSink failed. The surviving sinks kept receiving frames and were closed normally, so
 * their output is complete; `failures` says which sinks failed and why. `code` is that of the first failure.
 */
export class FrameSinkError extends StreamingT2VError {
  readonly failures: readonly SinkFailure[];
  /** Descriptions of the sinks that did not fail. */
  readonly survivors: readonly string[];

  constructor(failures: readonly SinkFailure[], survivors: readonly string[]) {
    const first = failures[0]?.error;
    const code = first instanceof StreamingT2VError ? first.code : 'ERR_NATIVE';
    const lines = failures.map((f) => `  - ${f.sink}: ${f.error instanceof Error ? f.error.message.split('\n')[0] : String(f.error)}`);
    super(
      code,
      `${failures.length} frame sink(s) failed:\n${lines.join('\n')}\n` +
        (survivors.length > 0 ? `Frames remain available in: ${survivors.join(', ')}.` : 'No sink survived.'),
      { cause: first },
    );
    this.failures = failures;
    this.survivors = survivors;
  }
}
