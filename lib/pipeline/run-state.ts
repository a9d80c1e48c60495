/**
 * Resumable run state (issue 5 item 6). With a state directory, the stage-2 loop persists after
 * every window everything it needs to continue exactly: the short-term memory frames (float32,
 * exact), the anchor frame, the stage-2 generator state, the preview frames so far and the index
 * of the next window. A crashed or aborted run restarts from there and produces the same video.
 *
 * Layout of the directory:
 * - `state.json`   — {format, key, nextWindow, framesDone, width, height, generator (base64), shapes}
 * - `memory-<k>.f32` — short-term memory [1,3,8,H,W] before window k (float32, little endian); a new
 *                    file per window, so state.json never points at a half-written one
 * - `anchor.f32`   — anchor frame [1,3,H,W]
 * - `preview.rgb`  — preview frames, RGB24, `framesDone` of them (a longer file is truncated: the
 *                    frames after the last saved window are regenerated)
 * `state.json` is written last and atomically (write + rename), so a kill at any point leaves
 * either the previous or the new consistent state.
 * @module
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { InvalidArgumentError } from '../errors.js';

/** Format of `state.json`; bump on incompatible changes. */
export const RUN_STATE_FORMAT = 1;

/** What `state.json` holds. */
export interface RunStateRecord {
  format: number;
  /** Hash of everything that determines the video (prompt, seeds, steps, sizes, model). */
  key: string;
  /** Index of the next stage-2 window to generate (1 = right after stage 1). */
  nextWindow: number;
  framesDone: number;
  width: number;
  height: number;
  generator: string;
  memoryFile: string;
  memoryShape: number[];
  anchorShape: number[];
}

/** Restored state. */
export interface RunState extends RunStateRecord {
  memory: Float32Array;
  anchor: Float32Array;
}

/** A stable hash of the options that determine the output. */
export function runKey(parts: unknown): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

function bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function floats(b: Buffer): Float32Array {
  const copy = new Uint8Array(b.byteLength);
  copy.set(b);
  return new Float32Array(copy.buffer);
}

/** Reads and writes one run's state directory. */
export class RunStateStore {
  readonly dir: string;
  constructor(dir: string) {
    if (typeof dir !== 'string' || dir.length === 0) {
      throw new InvalidArgumentError(`Expected a directory path for \`stateDir\` but received ${String(dir)}`);
    }
    this.dir = dir;
  }

  /** The saved state for `key`, or undefined when there is none (a different key is an error). */
  async load(key: string): Promise<RunState | undefined> {
    let record: RunStateRecord;
    try {
      record = JSON.parse(await readFile(join(this.dir, 'state.json'), 'utf8')) as RunStateRecord;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new InvalidArgumentError(`Cannot read the run state in ${this.dir}/state.json: ${(error as Error).message}`, { cause: error });
    }
    if (record.format !== RUN_STATE_FORMAT) {
      throw new InvalidArgumentError(`Expected run-state format ${RUN_STATE_FORMAT} in \`stateDir\` but received ${record.format}; use an empty directory`);
    }
    if (record.key !== key) {
      throw new InvalidArgumentError(
        `The state in \`stateDir\` (${this.dir}) belongs to a run with different options (prompt, seed, frames, steps or model); use a new directory or the same options`,
      );
    }
    const [memory, anchor] = await Promise.all([readFile(join(this.dir, record.memoryFile)), readFile(join(this.dir, 'anchor.f32'))]);
    const frameBytes = record.width * record.height * 3;
    const previewPath = join(this.dir, 'preview.rgb');
    const size = (await stat(previewPath)).size;
    if (size < record.framesDone * frameBytes) throw new InvalidArgumentError(`The preview frames in ${previewPath} are shorter than the saved state says`);
    if (size > record.framesDone * frameBytes) await truncate(previewPath, record.framesDone * frameBytes);
    return { ...record, memory: floats(memory), anchor: floats(anchor) };
  }

  /** Reads `count` preview frames starting at frame `from` (RGB24). */
  async readPreview(from: number, count: number, width: number, height: number): Promise<Uint8Array> {
    const frameBytes = width * height * 3;
    const fh = await open(join(this.dir, 'preview.rgb'), 'r');
    try {
      const out = new Uint8Array(count * frameBytes);
      const { bytesRead } = await fh.read(out, 0, out.byteLength, from * frameBytes);
      if (bytesRead !== out.byteLength) throw new InvalidArgumentError(`Preview frames ${from}..${from + count} are missing in ${this.dir}`);
      return out;
    } finally {
      await fh.close();
    }
  }

  /** Starts a fresh state directory (creates it; clears preview frames). */
  async reset(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await rm(join(this.dir, 'state.json'), { force: true });
    await writeFile(join(this.dir, 'preview.rgb'), new Uint8Array(0));
  }

  /** Appends preview frames (RGB24). */
  async appendPreview(frames: Uint8Array): Promise<void> {
    const fh = await open(join(this.dir, 'preview.rgb'), 'a');
    try {
      await fh.write(frames);
      await fh.datasync();
    } finally {
      await fh.close();
    }
  }

  /** Saves a consistent state after a window (data files first, state.json last and atomically). */
  async save(record: Omit<RunStateRecord, 'format' | 'memoryFile'>, memory: Float32Array, anchor: Float32Array): Promise<void> {
    const memoryFile = `memory-${record.nextWindow}.f32`;
    await writeFile(join(this.dir, memoryFile), bytes(memory));
    await writeFile(join(this.dir, 'anchor.f32.tmp'), bytes(anchor)); // the anchor never changes within a run
    await rename(join(this.dir, 'anchor.f32.tmp'), join(this.dir, 'anchor.f32'));
    const full: RunStateRecord = { format: RUN_STATE_FORMAT, ...record, memoryFile };
    let previous: string | undefined;
    try {
      previous = (JSON.parse(await readFile(join(this.dir, 'state.json'), 'utf8')) as RunStateRecord).memoryFile;
    } catch {
      previous = undefined;
    }
    await writeFile(join(this.dir, 'state.json.tmp'), JSON.stringify(full));
    await rename(join(this.dir, 'state.json.tmp'), join(this.dir, 'state.json'));
    if (previous !== undefined && previous !== memoryFile) await rm(join(this.dir, previous), { force: true });
  }
}
