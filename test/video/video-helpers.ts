// Shared helpers for the video tests: ffmpeg/ffprobe availability, probing, decoding and test frames.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

function works(command: string): boolean {
  const result = spawnSync(command, ['-hide_banner', '-version'], { stdio: 'ignore' });
  return result.status === 0;
}

/** True when both `ffmpeg` and `ffprobe` run from PATH. Tests that need them use `describe.runIf(hasFfmpeg)`. */
export const hasFfmpeg = works('ffmpeg') && works('ffprobe');

export interface ProbedStream {
  codec_name: string;
  pix_fmt: string;
  width: number;
  height: number;
  r_frame_rate: string;
  nb_read_frames: number;
}

/** ffprobe of the first video stream, counting decoded frames. Errors in a truncated file are tolerated. */
export async function probeVideo(file: string): Promise<ProbedStream> {
  const { stdout } = await execFileAsync('ffprobe', [
    '-v', 'quiet', '-count_frames', '-select_streams', 'v:0',
    '-show_entries', 'stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames', '-of', 'json', file,
  ]);
  const parsed = JSON.parse(stdout) as { streams?: Record<string, unknown>[] };
  const stream = parsed.streams?.[0];
  if (stream === undefined) throw new Error(`ffprobe found no video stream in ${file}`);
  return { ...(stream as unknown as ProbedStream), nb_read_frames: Number(stream['nb_read_frames']) };
}

/** Decodes any image or video to raw RGB24 bytes with ffmpeg. */
export async function decodeToRgb(file: string, frames?: number): Promise<Buffer> {
  const { stdout } = await execFileAsync(
    'ffmpeg',
    ['-v', 'error', '-i', file, ...(frames === undefined ? [] : ['-frames:v', String(frames)]), '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'],
    { encoding: 'buffer', maxBuffer: 1 << 28 },
  );
  return stdout;
}

/** A deterministic RGB24 test frame: smooth gradients that move with `seed`. */
export function makeFrame(width: number, height: number, seed = 0): Uint8Array {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      data[o] = (x * 4 + seed * 7) & 0xff;
      data[o + 1] = (y * 4 + seed * 3) & 0xff;
      data[o + 2] = ((x + y) * 2 + seed * 11) & 0xff;
    }
  }
  return data;
}

/** Pseudo-random bytes (xorshift), for exact round trips where compression must not help. */
export function noiseFrame(width: number, height: number, seed = 1): Uint8Array {
  const data = new Uint8Array(width * height * 3);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < data.length; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    data[i] = s & 0xff;
  }
  return data;
}

/** A fresh temporary directory and its cleanup. */
export async function tempDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `streamingt2v-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** True while a process with this pid exists (signal 0 probes without sending anything). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

/** Polls `predicate` every 20 ms until it is true or `timeoutMs` passes; returns its last value. */
export async function waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}
