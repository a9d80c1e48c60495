/**
 * The error hierarchy. Every error the library throws is a {@link StreamingT2VError} with a stable
 * `code`; native failures are translated in one place ({@link fromNativeError}).
 *
 * | code | class | when |
 * |---|---|---|
 * | `ERR_BINDING_LOAD` | {@link BindingLoadError} | the addon or libtorch cannot be loaded |
 * | `ERR_INVALID_ARG` | {@link InvalidArgumentError} | a bad argument or option (checked before native work) |
 * | `ERR_DISPOSED` | {@link DisposedError} | a tensor, module, generator or pipeline used after `dispose()` |
 * | `ERR_TORCH` | {@link TorchError} | libtorch raised (`c10::Error`), message without C++ backtrace |
 * | `ERR_OUT_OF_MEMORY` | {@link OutOfMemoryError} | an allocation failed (CPU or CUDA) |
 * | `ERR_MODEL_LOAD` | {@link ModelLoadError} | a TorchScript file is missing or cannot be loaded |
 * | `ERR_ABANDONED` | {@link AbandonedError} | queued native work was dropped because its executor shut down |
 * | `ERR_NATIVE` | {@link NativeError} | any other native failure, naming the native call |
 * | `ERR_MANIFEST` | `ManifestError` (lib/models) | a model directory's manifest is missing, invalid, newer, or disagrees with its files |
 * | `ERR_FFMPEG_NOT_FOUND` | `FfmpegNotFoundError` (lib/video) | no usable ffmpeg binary |
 * | `ERR_FFMPEG` | `FfmpegError` (lib/video) | ffmpeg exited, crashed or was killed while encoding |
 *
 * Type guards check `name`/`code` rather than `instanceof`, so they work across realms and
 * duplicated package copies.
 */

/** Stable error codes. */
export type ErrorCode =
  | 'ERR_BINDING_LOAD'
  | 'ERR_INVALID_ARG'
  | 'ERR_DISPOSED'
  | 'ERR_TORCH'
  | 'ERR_OUT_OF_MEMORY'
  | 'ERR_MODEL_LOAD'
  | 'ERR_ABANDONED'
  | 'ERR_NATIVE'
  | 'ERR_MANIFEST'
  | 'ERR_FFMPEG_NOT_FOUND'
  | 'ERR_FFMPEG';

/** Base class of every error thrown by streamingt2v. */
export class StreamingT2VError extends Error {
  /** Stable machine-readable code, e.g. `'ERR_DISPOSED'`. */
  readonly code: ErrorCode;
  /** The native call that failed, when the error came from the addon (e.g. `'forward'`). */
  readonly nativeCall?: string;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; nativeCall?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options?.nativeCall !== undefined) this.nativeCall = options.nativeCall;
    Object.defineProperty(this, 'name', { value: new.target.name, enumerable: false, configurable: true });
  }
}

/** The native addon or the libtorch shared libraries could not be loaded. `message` lists what was tried and how to fix it. */
export class BindingLoadError extends StreamingT2VError {
  constructor(message: string, cause?: unknown) {
    super('ERR_BINDING_LOAD', message, { cause });
  }
}

/** A bad argument: wrong type, range, shape or dtype. */
export class InvalidArgumentError extends StreamingT2VError {
  constructor(message: string, options?: { cause?: unknown; nativeCall?: string }) {
    super('ERR_INVALID_ARG', message, options);
  }
}

/** An object was used after `dispose()`. */
export class DisposedError extends StreamingT2VError {
  constructor(what: string, options?: { cause?: unknown; nativeCall?: string }) {
    super('ERR_DISPOSED', what.includes('dispose') ? what : `${what} was used after dispose()`, options);
  }
}

/** libtorch raised an error (the message is libtorch's, without the C++ backtrace). */
export class TorchError extends StreamingT2VError {
  constructor(message: string, options?: { cause?: unknown; nativeCall?: string }) {
    super('ERR_TORCH', message, options);
  }
}

/** An allocation failed. `device`, `stage` and `window` say where, when known. */
export class OutOfMemoryError extends StreamingT2VError {
  device?: string;
  stage?: string;
  window?: number;
  constructor(message: string, options?: { cause?: unknown; nativeCall?: string; device?: string; stage?: string; window?: number }) {
    super('ERR_OUT_OF_MEMORY', message, options);
    if (options?.device !== undefined) this.device = options.device;
    if (options?.stage !== undefined) this.stage = options.stage;
    if (options?.window !== undefined) this.window = options.window;
  }
}

/** A TorchScript file is missing, truncated, corrupt or otherwise cannot be loaded. */
export class ModelLoadError extends StreamingT2VError {
  /** The file that failed. */
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown; nativeCall?: string }) {
    super('ERR_MODEL_LOAD', message, options);
    this.path = path;
  }
}

/** Queued native work was dropped because its executor shut down (environment teardown). */
export class AbandonedError extends StreamingT2VError {
  constructor(message: string, options?: { cause?: unknown; nativeCall?: string }) {
    super('ERR_ABANDONED', message, options);
  }
}

/** Any other native failure; `nativeCall` names the call. */
export class NativeError extends StreamingT2VError {
  constructor(message: string, options?: { cause?: unknown; nativeCall?: string }) {
    super('ERR_NATIVE', message, options);
  }
}

/** True for any error thrown by this library (works across realms). */
export function isStreamingT2VError(error: unknown): error is StreamingT2VError {
  return (
    typeof error === 'object' &&
    error !== null &&
    typeof (error as { code?: unknown }).code === 'string' &&
    ((error as { code: string }).code.startsWith('ERR_') && error instanceof Error)
  );
}

/** True when `error` is a streamingt2v error with the given code. */
export function hasErrorCode<C extends ErrorCode>(error: unknown, code: C): error is StreamingT2VError & { code: C } {
  return isStreamingT2VError(error) && error.code === code;
}

/**
 * The single translation point for errors coming out of the addon: maps the native `code` to a
 * class and splices in `callerStack` (captured before the await, the sharp pattern) so the
 * rejection points at the user's code rather than at the event loop.
 * @internal
 */
export function fromNativeError(error: unknown, callerStack?: string): StreamingT2VError {
  if (error instanceof StreamingT2VError) return error;
  const native = error as { code?: unknown; message?: unknown; nativeCall?: unknown } | null;
  const message = typeof native?.message === 'string' ? native.message : String(error);
  const nativeCall = typeof native?.nativeCall === 'string' ? native.nativeCall : undefined;
  const options = { cause: error, ...(nativeCall === undefined ? {} : { nativeCall }) };
  let out: StreamingT2VError;
  switch (native?.code) {
    case 'ERR_INVALID_ARG':
      out = new InvalidArgumentError(message, options);
      break;
    case 'ERR_DISPOSED':
      out = new DisposedError(message, options);
      break;
    case 'ERR_TORCH':
      out = new TorchError(message, options);
      break;
    case 'ERR_OUT_OF_MEMORY':
      out = new OutOfMemoryError(message, options);
      break;
    case 'ERR_ABANDONED':
      out = new AbandonedError(message, options);
      break;
    default:
      out = new NativeError(message, options);
  }
  if (callerStack !== undefined) {
    const callerFrames = callerStack.split('\n').slice(1).join('\n');
    out.stack = `${out.name}: ${out.message}\n${callerFrames}`;
  }
  return out;
}

/**
 * Runs one native call, translating any failure (sync throw or rejection) and keeping the
 * caller's stack.
 * @internal
 */
export async function callNative<T>(fn: () => T | Promise<T>): Promise<T> {
  const callerStack = new Error().stack;
  try {
    return await fn();
  } catch (error) {
    throw fromNativeError(error, callerStack);
  }
}

/**
 * Runs a synchronous native read (metadata), translating failures.
 * @internal
 */
export function callNativeSync<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw fromNativeError(error);
  }
}
