/**
 * Locating the system ffmpeg and probing its version.
 *
 * Search order: the `ffmpegPath` option, then the `STREAMINGT2V_FFMPEG` environment variable, then `ffmpeg` on `PATH`.
 * An explicit choice (option or variable) that does not work is an error; it never silently falls through to `PATH`.
 * The library never downloads ffmpeg: on Debian/Ubuntu, `apt-get install ffmpeg` gives one with libx264.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, isAbsolute, join, resolve, sep } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { FfmpegNotFoundError } from './errors.js';

/** Name of the environment variable that points at an ffmpeg binary. */
export const FFMPEG_ENV_VAR = 'STREAMINGT2V_FFMPEG';

/** Options of {@link locateFfmpeg}. */
export interface LocateFfmpegOptions {
  /**
   * The ffmpeg to use: a path (absolute or relative to the working directory), or a bare command name looked up on
   * `PATH`. When set, it must work: there is no fallback.
   * Default: unset (use `STREAMINGT2V_FFMPEG`, then `ffmpeg` on `PATH`).
   * @example `{ ffmpegPath: '/usr/bin/ffmpeg' }`
   */
  readonly ffmpegPath?: string | undefined;
  /**
   * Environment that supplies `STREAMINGT2V_FFMPEG` and `PATH`. Default: `process.env`.
   * @example `{ env: { PATH: '/opt/ffmpeg/bin' } }`
   */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /**
   * Milliseconds to wait for `ffmpeg -version` before giving up on a candidate. Default: 10000.
   */
  readonly probeTimeoutMs?: number | undefined;
}

/** Where {@link locateFfmpeg} found ffmpeg. */
export type FfmpegSource = 'option' | 'env' | 'path';

/** A working ffmpeg, as found by {@link locateFfmpeg}. */
export interface FfmpegInfo {
  /** Absolute path of the binary. */
  readonly path: string;
  /** Which rule found it. */
  readonly source: FfmpegSource;
  /** Version string from `ffmpeg -version`, e.g. `'5.1.6-0+deb12u1'`. */
  readonly version: string;
  /** Whether the build was configured with `--enable-libx264` (needed by {@link Mp4Writer}). */
  readonly hasLibx264: boolean;
}

const probeCache = new Map<string, Promise<{ version: string; hasLibx264: boolean }>>();

function describeFsError(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ENOENT') return 'ENOENT (no such file)';
  if (code === 'EACCES') return 'EACCES (not executable)';
  return typeof code === 'string' ? code : String(error);
}

/** Resolves to the reason a file is not an executable regular file, or `undefined` when it is one. */
async function whyNotExecutable(file: string): Promise<string | undefined> {
  try {
    const info = await stat(file);
    if (!info.isFile()) return 'not a regular file';
    await access(file, fsConstants.X_OK);
    return undefined;
  } catch (error) {
    return describeFsError(error);
  }
}

function executableNames(name: string): string[] {
  if (process.platform !== 'win32' || /\.[a-z0-9]+$/i.test(name)) return [name];
  return [`${name}.exe`, name];
}

/** Runs `<file> -hide_banner -version` and parses the version and whether libx264 is enabled. */
function probe(file: string, timeoutMs: number): Promise<{ version: string; hasLibx264: boolean }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, ['-hide_banner', '-version'], { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    const chunks: Buffer[] = [];
    let size = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      if (size < 65536) chunks.push(chunk);
      size += chunk.length;
    });
    child.stderr.resume();
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(describeFsError(error)));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('utf8');
      const match = /^ffmpeg version (\S+)/m.exec(text);
      if (code !== 0 || match === null) {
        const why = signal !== null ? `killed by ${signal} (timeout ${timeoutMs} ms?)` : `exit code ${code}`;
        reject(new Error(`\`-version\` did not identify ffmpeg (${why})`));
        return;
      }
      resolvePromise({ version: match[1] as string, hasLibx264: /--enable-libx264\b/.test(text) });
    });
  });
}

/** Probes with a per-path cache; failures are not cached. */
function cachedProbe(file: string, timeoutMs: number): Promise<{ version: string; hasLibx264: boolean }> {
  let pending = probeCache.get(file);
  if (pending === undefined) {
    pending = probe(file, timeoutMs);
    probeCache.set(file, pending);
    pending.catch(() => probeCache.delete(file));
  }
  return pending;
}

/** Candidates for a bare command name on `PATH` (empty entries, meaning the working directory, are skipped). */
function pathCandidates(name: string, pathVar: string | undefined): string[] {
  const dirs = (pathVar ?? '').split(delimiter).filter((d) => d !== '');
  return dirs.flatMap((dir) => executableNames(name).map((n) => join(resolve(dir), n)));
}

/**
 * Finds a working ffmpeg and probes its version.
 *
 * Order: `options.ffmpegPath` > `STREAMINGT2V_FFMPEG` > `ffmpeg` on `PATH`. The probe result is cached per binary.
 *
 * @throws {@link FfmpegNotFoundError} listing every candidate tried and the apt fix.
 * @throws {@link InvalidArgumentError} when `ffmpegPath` is not a non-empty string.
 *
 * @example
 * ```ts
 * const ffmpeg = await locateFfmpeg();            // { path: '/usr/bin/ffmpeg', source: 'path', version: '5.1.6-…', hasLibx264: true }
 * const custom = await locateFfmpeg({ ffmpegPath: '/opt/ffmpeg/bin/ffmpeg' });
 * ```
 */
export async function locateFfmpeg(options: LocateFfmpegOptions = {}): Promise<FfmpegInfo> {
  const env = options.env ?? process.env;
  const timeoutMs = options.probeTimeoutMs ?? 10_000;
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new InvalidArgumentError(`Expected a positive number of milliseconds for \`probeTimeoutMs\` but received ${String(timeoutMs)}`);
  }
  const tried: string[] = [];

  let source: FfmpegSource;
  let label: string;
  let spec: string | undefined;
  if (options.ffmpegPath !== undefined) {
    if (typeof options.ffmpegPath !== 'string' || options.ffmpegPath === '') {
      throw new InvalidArgumentError(
        `Expected a non-empty path or command name for \`ffmpegPath\` but received ${JSON.stringify(options.ffmpegPath)}`,
      );
    }
    [source, label, spec] = ['option', 'option ffmpegPath', options.ffmpegPath];
  } else if (env[FFMPEG_ENV_VAR] !== undefined && env[FFMPEG_ENV_VAR] !== '') {
    [source, label, spec] = ['env', `env ${FFMPEG_ENV_VAR}`, env[FFMPEG_ENV_VAR]];
  } else {
    [source, label, spec] = ['path', 'PATH', 'ffmpeg'];
  }

  const isBareName = !spec.includes(sep) && !spec.includes('/') && !isAbsolute(spec);
  const candidates = isBareName ? pathCandidates(spec, env['PATH']) : [resolve(spec)];
  if (isBareName && candidates.length === 0) tried.push(`${label}: \`${spec}\` on PATH, but PATH is empty`);

  for (const candidate of candidates) {
    const why = await whyNotExecutable(candidate);
    if (why !== undefined) {
      // On PATH a missing entry is normal; list only the directories, compactly.
      tried.push(`${label}${isBareName ? '' : `=${spec}`}: ${candidate}: ${why}`);
      continue;
    }
    try {
      const { version, hasLibx264 } = await cachedProbe(candidate, timeoutMs);
      return { path: candidate, source, version, hasLibx264 };
    } catch (error) {
      tried.push(`${label}: ${candidate}: ${error instanceof Error ? error.message : String(error)}`);
      if (!isBareName) break;
    }
  }
  throw new FfmpegNotFoundError(tried);
}
