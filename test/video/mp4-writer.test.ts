import { mkdir, readFile, stat } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DisposedError, InvalidArgumentError } from '../../lib/errors.js';
import { FfmpegError } from '../../lib/video/errors.js';
import { locateFfmpeg } from '../../lib/video/ffmpeg.js';
import { mp4EncoderArgs, Mp4Writer, type Mp4WriterOptions } from '../../lib/video/mp4-writer.js';
import { decodeToRgb, hasFfmpeg, makeFrame, probeVideo, processExists, tempDir, waitFor } from './video-helpers.js';

let dir = '';
let cleanup: () => Promise<void> = async () => undefined;
beforeAll(async () => ({ dir, cleanup } = await tempDir('mp4')));
afterAll(() => cleanup());

async function fileSize(file: string): Promise<number> {
  return stat(file).then((s) => s.size, () => 0);
}

describe('Mp4Writer option validation (no ffmpeg needed)', () => {
  const base: Mp4WriterOptions = { path: 'x.mp4', width: 8, height: 8 };
  it.each([
    [{ width: 0 }, /^Expected a positive integer for `width` but received 0$/],
    [{ height: 2.5 }, /for `height` but received 2.5/],
    [{ fps: -1 }, /^Expected a number in \(0, 1000\] for `fps` but received -1$/],
    [{ crf: 60 }, /^Expected a number in \[0, 51\] for `crf` but received 60$/],
    [{ preset: 'quick' }, /for `preset` but received "quick"/],
    [{ keyframeInterval: 0 }, /for `keyframeInterval` but received 0/],
    [{ path: '' }, /for `path` but received ""/],
  ])('%j is rejected', async (patch, message) => {
    const error = await Mp4Writer.open({ ...base, ...(patch as Partial<Mp4WriterOptions>) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toMatch(message);
  });
});

describe.runIf(hasFfmpeg)('Mp4Writer with the system ffmpeg', () => {
  it('encodes H.264 yuv420p at 8 fps by default, fragmented, every frame present', async () => {
    const path = join(dir, 'basic.mp4');
    const writer = await Mp4Writer.open({ path, width: 64, height: 48 });
    for (let i = 0; i < 24; i++) await writer.write(makeFrame(64, 48, i));
    const result = await writer.close();
    expect(result).toEqual({ path, frames: 24, bytes: await fileSize(path), complete: true });
    expect(result.bytes).toBeGreaterThan(0);
    expect(await probeVideo(path)).toMatchObject({
      codec_name: 'h264', pix_fmt: 'yuv420p', width: 64, height: 48, r_frame_rate: '8/1', nb_read_frames: 24,
    });
    const bytes = await readFile(path);
    // Fragmented: movie fragments, and a keyframe (fragment) per second at 8 fps.
    expect(bytes.includes('moof')).toBe(true);
    expect(bytes.toString('latin1').split('moof').length - 1).toBeGreaterThanOrEqual(3);
    expect(writer.exited).toBe(true);
    expect(processExists(writer.pid!)).toBe(false);
  });

  it('pads odd sizes with one black column on the right and one black row at the bottom', async () => {
    const path = join(dir, 'odd.mp4');
    const writer = await Mp4Writer.open({ path, width: 63, height: 47, fps: 24, crf: 10, preset: 'veryfast' });
    expect([writer.outputWidth, writer.outputHeight]).toEqual([64, 48]);
    const white = new Uint8Array(63 * 47 * 3).fill(255);
    for (let i = 0; i < 5; i++) await writer.write(white);
    await writer.close();
    expect(await probeVideo(path)).toMatchObject({ codec_name: 'h264', pix_fmt: 'yuv420p', width: 64, height: 48, r_frame_rate: '24/1', nb_read_frames: 5 });
    const rgb = await decodeToRgb(path, 1);
    const at = (x: number, y: number): number => rgb[(y * 64 + x) * 3 + 1]!;
    expect(at(30, 20)).toBeGreaterThan(230); // picture
    expect(at(63, 20)).toBeLessThan(30); // padded column
    expect(at(30, 47)).toBeLessThan(30); // padded row
  });

  it('rejects frames of the wrong size without harming the stream', async () => {
    const path = join(dir, 'wrong-size.mp4');
    const writer = await Mp4Writer.open({ path, width: 16, height: 16 });
    await expect(writer.write(new Uint8Array(10))).rejects.toThrow(/^Expected a Uint8Array of 768 bytes \(16x16 RGB24\) for `frame` but received 10 bytes$/);
    await writer.write(makeFrame(16, 16));
    expect((await writer.close()).frames).toBe(1);
    await expect(writer.write(makeFrame(16, 16))).rejects.toBeInstanceOf(DisposedError);
  });

  it('honours backpressure: writes stay pending while the pipe is full', async () => {
    const path = join(dir, 'backpressure.mp4');
    const writer = await Mp4Writer.open({ path, width: 640, height: 480, preset: 'ultrafast' });
    const settled = new Set<number>();
    const writes = Array.from({ length: 12 }, (_, i) => writer.write(makeFrame(640, 480, i)).then(() => void settled.add(i)));
    await nextTurn();
    expect(settled.size).toBeLessThan(12); // 11 MB cannot fit in a pipe: some writes are still waiting
    expect(writer.backpressureWaits).toBeGreaterThan(0);
    await Promise.all(writes);
    expect(writer.framesWritten).toBe(12);
    expect((await writer.close()).frames).toBe(12);
    expect((await probeVideo(path)).nb_read_frames).toBe(12);
  });

  it('abort() stops ffmpeg, leaves no process and a playable partial file', async () => {
    const path = join(dir, 'abort.mp4');
    const writer = await Mp4Writer.open({ path, width: 64, height: 48 });
    for (let i = 0; i < 20; i++) await writer.write(makeFrame(64, 48, i));
    const pid = writer.pid!;
    const result = await writer.abort();
    expect(result).toMatchObject({ path, frames: 20, complete: false });
    expect(writer.exited).toBe(true);
    expect(processExists(pid)).toBe(false);
    const probed = await probeVideo(path);
    expect(probed).toMatchObject({ codec_name: 'h264', width: 64, height: 48 });
    // At least every complete 8-frame fragment; never more than was written.
    expect(probed.nb_read_frames).toBeGreaterThanOrEqual(16);
    expect(probed.nb_read_frames).toBeLessThanOrEqual(20);
    await expect(writer.write(makeFrame(64, 48))).rejects.toBeInstanceOf(DisposedError);
    await expect(writer.close()).rejects.toBeInstanceOf(DisposedError);
    expect(await writer.abort()).toBe(result);
  });

  it('abort() escalates to SIGKILL when ffmpeg does not stop (stopped process)', async () => {
    const path = join(dir, 'abort-kill.mp4');
    const writer = await Mp4Writer.open({ path, width: 64, height: 48, killGraceMs: 100 });
    for (let i = 0; i < 10; i++) await writer.write(makeFrame(64, 48, i));
    const pid = writer.pid!;
    process.kill(pid, 'SIGSTOP');
    const started = Date.now();
    await writer.abort();
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(processExists(pid)).toBe(false);
  });

  it('ffmpeg killed mid-write: the next write and close reject with FfmpegError and stderr; complete fragments stay playable', async () => {
    const path = join(dir, 'killed.mp4');
    const writer = await Mp4Writer.open({ path, width: 128, height: 96, preset: 'ultrafast' });
    for (let i = 0; i < 40; i++) await writer.write(makeFrame(128, 96, i));
    // Wait until ffmpeg has flushed a few fragments, then kill it without warning.
    expect(await waitFor(async () => (await readFile(path).catch(() => Buffer.alloc(0))).toString('latin1').split('moof').length - 1 >= 2)).toBe(true);
    const pid = writer.pid!;
    process.kill(pid, 'SIGKILL');
    await waitFor(() => writer.exited);

    const error = await writer.write(makeFrame(128, 96)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FfmpegError);
    const e = error as FfmpegError;
    expect(e.signal).toBe('SIGKILL');
    expect(e.pid).toBe(pid);
    expect(e.message).toContain('killed by SIGKILL');
    expect(e.stderrTail).toMatch(/libx264/); // ffmpeg's info lines up to the kill
    expect(e.message).toContain(e.stderrTail.split('\n')[0]);
    await expect(writer.close()).rejects.toBe(e);
    expect(processExists(pid)).toBe(false);

    const probed = await probeVideo(path);
    expect(probed.codec_name).toBe('h264');
    expect(probed.nb_read_frames).toBeGreaterThanOrEqual(8);
    expect(probed.nb_read_frames).toBeLessThanOrEqual(40);
  });

  it('ffmpeg failing at start (output path is a directory): FfmpegError with its stderr', async () => {
    const path = join(dir, 'is-a-dir');
    await mkdir(path);
    const writer = await Mp4Writer.open({ path, width: 16, height: 16 });
    const error = await (async () => {
      for (let i = 0; i < 50; i++) await writer.write(makeFrame(16, 16, i));
      return writer.close();
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FfmpegError);
    expect((error as FfmpegError).exitCode).not.toBe(0);
    expect((error as FfmpegError).stderrTail).toMatch(/Is a directory/);
    expect(processExists(writer.pid!)).toBe(false);
  });

  it('AbortSignal and Symbol.asyncDispose abort and reap ffmpeg', async () => {
    const controller = new AbortController();
    const a = await Mp4Writer.open({ path: join(dir, 'signal.mp4'), width: 16, height: 16, signal: controller.signal });
    await a.write(makeFrame(16, 16));
    controller.abort();
    expect(await waitFor(() => a.exited)).toBe(true);
    await expect(a.write(makeFrame(16, 16))).rejects.toBeInstanceOf(DisposedError);
    expect(processExists(a.pid!)).toBe(false);

    const b = await Mp4Writer.open({ path: join(dir, 'dispose.mp4'), width: 16, height: 16 });
    await b.write(makeFrame(16, 16));
    await b[Symbol.asyncDispose]();
    expect(b.exited).toBe(true);
    expect(processExists(b.pid!)).toBe(false);
  });

  it('SIGKILL of the writing process: ffmpeg sees end of input and finishes a playable file', async () => {
    // A child node process drives ffmpeg with exactly Mp4Writer's arguments and stdio, then SIGKILLs itself.
    const path = join(dir, 'parent-killed.mp4');
    const ffmpeg = await locateFfmpeg();
    const script = [
      "import { spawn } from 'node:child_process';",
      'const [ffmpeg, args] = JSON.parse(process.argv[1]);',
      "const child = spawn(ffmpeg, args, { stdio: ['pipe', 'ignore', 'pipe'] });",
      "child.stderr.on('data', () => {});",
      'for (let i = 0; i < 20; i++) await new Promise((r) => child.stdin.write(Buffer.alloc(64 * 48 * 3, i * 12), r));',
      "process.stdout.write(String(child.pid), () => process.kill(process.pid, 'SIGKILL'));",
    ].join('\n');
    const payload = JSON.stringify([ffmpeg.path, mp4EncoderArgs({ path, width: 64, height: 48 })]);
    const result = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script, payload]).catch((e: unknown) => e);
    expect((result as { signal?: string }).signal).toBe('SIGKILL');
    const ffmpegPid = Number((result as { stdout: string }).stdout);
    expect(ffmpegPid).toBeGreaterThan(0);
    const running = async (): Promise<boolean> => {
      const stat = await readFile(`/proc/${ffmpegPid}/stat`, 'latin1').catch(() => '');
      return stat !== '' && !/^\d+ \(.*\) Z/.test(stat);
    };
    expect(await waitFor(async () => !(await running()), 10_000)).toBe(true);
    expect(await probeVideo(path)).toMatchObject({ codec_name: 'h264', pix_fmt: 'yuv420p', nb_read_frames: 20 });
  });
});
