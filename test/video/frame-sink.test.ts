import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DisposedError, InvalidArgumentError } from '../../lib/errors.js';
import { FfmpegError, FfmpegNotFoundError, FrameSinkError } from '../../lib/video/errors.js';
import { FanoutSink, Mp4Sink, validateVideoFrame, type FrameSink } from '../../lib/video/frame-sink.js';
import { PngSequenceSink } from '../../lib/video/png-sink.js';
import { RawSink, type RawSidecar } from '../../lib/video/raw-sink.js';
import type { VideoFrame, VideoStage } from '../../lib/video/video-frame.js';
import { decodeToRgb, hasFfmpeg, makeFrame, probeVideo, processExists, tempDir, waitFor } from './video-helpers.js';

let dir = '';
let cleanup: () => Promise<void> = async () => undefined;
beforeAll(async () => ({ dir, cleanup } = await tempDir('sinks')));
afterAll(() => cleanup());

function frame(index: number, width = 32, height = 24, stage: VideoStage = 'preview'): VideoFrame {
  return { index, stage, width, height, data: makeFrame(width, height, index) };
}

describe('validateVideoFrame', () => {
  it('names the bad field in the house message shape', () => {
    expect(() => validateVideoFrame({ ...frame(0), width: 0 })).toThrow(/^Expected a positive integer for `frame.width` but received 0$/);
    expect(() => validateVideoFrame({ ...frame(0), index: -1 })).toThrow(/for `frame.index` but received -1/);
    expect(() => validateVideoFrame({ ...frame(0), stage: 'draft' as VideoStage })).toThrow(/for `frame.stage` but received "draft"/);
    expect(() => validateVideoFrame({ ...frame(0), data: new Uint8Array(5) })).toThrow(InvalidArgumentError);
    expect(() => validateVideoFrame(frame(3))).not.toThrow();
  });
});

describe('PngSequenceSink', () => {
  it('writes dir/frame_000000.png per frame of its stage, complete files only', async () => {
    const out = join(dir, 'png');
    const sink = new PngSequenceSink({ dir: out, stage: 'final' });
    await Promise.all([0, 1, 2].map((i) => sink.write(frame(i, 32, 24, 'final'))));
    await sink.write(frame(7, 32, 24, 'preview')); // other stage: ignored
    await sink.close();
    expect(sink.framesWritten).toBe(3);
    expect((await readdir(out)).sort()).toEqual(['frame_000000.png', 'frame_000001.png', 'frame_000002.png']);
    const png = await readFile(join(out, 'frame_000002.png'));
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
    await expect(sink.write(frame(3, 32, 24, 'final'))).rejects.toBeInstanceOf(DisposedError);
  });

  it.runIf(hasFfmpeg)('files decode to the exact frame bytes', async () => {
    const out = join(dir, 'png-exact');
    const sink = new PngSequenceSink({ dir: out, prefix: 'f', digits: 3 });
    const f = frame(4, 33, 17);
    await sink.write(f);
    await sink.close();
    expect(Buffer.compare(await decodeToRgb(sink.fileFor(4)), Buffer.from(f.data))).toBe(0);
    expect(sink.fileFor(4)).toBe(join(out, 'f004.png'));
  });
});

describe('RawSink', () => {
  it('appends frames in call order and describes them in a sidecar', async () => {
    const path = join(dir, 'clip.rgb');
    const sink = new RawSink({ path, fps: 8 });
    const frames = Array.from({ length: 5 }, (_, i) => frame(i));
    await Promise.all(frames.map((f) => sink.write(f))); // concurrent writes still land in order
    await expect(sink.write(frame(5, 16, 16))).rejects.toThrow(/Expected 32x24 \(the size of the first frame\)/);
    await sink.close();
    const bytes = await readFile(path);
    expect(Buffer.compare(bytes, Buffer.concat(frames.map((f) => f.data)))).toBe(0);
    const sidecar = JSON.parse(await readFile(`${path}.json`, 'utf8')) as RawSidecar;
    expect(sidecar).toMatchObject({ format: 'rawvideo', pixelFormat: 'rgb24', width: 32, height: 24, fps: 8, frames: 5, frameBytes: 2304, complete: true });
    expect(sidecar.ffmpegCommand).toContain('-s 32x24 -framerate 8');
  });

  it('abort keeps the frames and marks the sidecar incomplete', async () => {
    const path = join(dir, 'aborted.rgb');
    const sink = new RawSink({ path });
    await sink.write(frame(0));
    await sink.write(frame(1));
    await sink.abort();
    expect((await stat(path)).size).toBe(2 * 2304);
    expect(JSON.parse(await readFile(`${path}.json`, 'utf8'))).toMatchObject({ frames: 2, complete: false });
    await expect(sink.write(frame(2))).rejects.toBeInstanceOf(DisposedError);
  });
});

describe('FanoutSink with ffmpeg missing: frames remain available', () => {
  it('drops the failed Mp4Sink, keeps PNG and raw output, and reports a typed error at close', async () => {
    const out = join(dir, 'fanout-missing');
    const mp4 = new Mp4Sink({ path: join(out, 'clip.mp4'), ffmpegPath: join(dir, 'no-ffmpeg-here') });
    const png = new PngSequenceSink({ dir: join(out, 'png') });
    const raw = new RawSink({ path: join(out, 'clip.rgb') });
    const onSinkError = vi.fn();
    const sink = new FanoutSink([mp4, png, raw], { onSinkError });
    for (let i = 0; i < 5; i++) await sink.write(frame(i));
    expect(onSinkError).toHaveBeenCalledTimes(1);
    expect(onSinkError.mock.calls[0]![0]).toBeInstanceOf(FfmpegNotFoundError);
    expect(onSinkError.mock.calls[0]![1]).toBe(mp4);
    expect(sink.liveSinks).toEqual([png, raw]);

    const error = await sink.close().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FrameSinkError);
    const e = error as FrameSinkError;
    expect(e.code).toBe('ERR_FFMPEG_NOT_FOUND');
    expect(e.failures).toHaveLength(1);
    expect(e.failures[0]!.error).toBeInstanceOf(FfmpegNotFoundError);
    expect(e.survivors).toEqual([String(png), String(raw)]);
    expect(e.message).toMatch(/Frames remain available in: PngSequenceSink/);
    expect(await readdir(join(out, 'png'))).toHaveLength(5);
    expect((await stat(join(out, 'clip.rgb'))).size).toBe(5 * 2304);
  });

  it('failFast: the first failure rejects the write and aborts every sink', async () => {
    const raw = new RawSink({ path: join(dir, 'failfast.rgb') });
    const sink = new FanoutSink([new Mp4Sink({ path: join(dir, 'ff.mp4'), env: { PATH: '' } }), raw], { failFast: true });
    await expect(sink.write(frame(0))).rejects.toBeInstanceOf(FrameSinkError);
    await expect(raw.write(frame(1))).rejects.toBeInstanceOf(DisposedError);
  });

  it('rejects a write only when no sink is left', async () => {
    const broken: FrameSink = { write: () => Promise.reject(new Error('disk full')), close: async () => undefined, abort: async () => undefined };
    const sink = new FanoutSink([broken]);
    const error = await sink.write(frame(0)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FrameSinkError);
    expect((error as Error).message).toMatch(/disk full[\s\S]*No sink survived/);
  });
});

describe.runIf(hasFfmpeg)('Mp4Sink and FanoutSink with the system ffmpeg', () => {
  it('Mp4Sink writes only its stage, sized by the first frame', async () => {
    const path = join(dir, 'preview.mp4');
    const sink = new Mp4Sink({ path, stage: 'preview', preset: 'veryfast' });
    for (let i = 0; i < 16; i++) {
      await sink.write(frame(i, 48, 32, 'preview'));
      if (i % 4 === 0) await sink.write(frame(i, 96, 64, 'final')); // ignored
    }
    await expect(sink.write(frame(16, 50, 32, 'preview'))).rejects.toThrow(/Expected 48x32/);
    await sink.close();
    expect(sink.result).toMatchObject({ path, frames: 16, complete: true });
    expect(await probeVideo(path)).toMatchObject({ codec_name: 'h264', pix_fmt: 'yuv420p', width: 48, height: 32, nb_read_frames: 16 });
  });

  it('ffmpeg killed mid-write: the raw sink keeps every frame, the partial MP4 stays readable, close reports FfmpegError', async () => {
    const out = join(dir, 'fanout-killed');
    const mp4 = new Mp4Sink({ path: join(out, 'clip.mp4'), preset: 'ultrafast' });
    const png = new PngSequenceSink({ dir: out, stage: 'preview' });
    const raw = new RawSink({ path: join(out, 'clip.rgb') });
    const sink = new FanoutSink([mp4, raw, png]);
    for (let i = 0; i < 24; i++) await sink.write(frame(i, 64, 48));
    const writer = await mp4.writer!;
    expect(await waitFor(async () => (await stat(writer.path).catch(() => ({ size: 0 }))).size > 2000)).toBe(true);
    process.kill(writer.pid!, 'SIGKILL');
    await waitFor(() => writer.exited);
    for (let i = 24; i < 32; i++) await sink.write(frame(i, 64, 48));
    const error = (await sink.close().catch((e: unknown) => e)) as FrameSinkError;
    expect(error).toBeInstanceOf(FrameSinkError);
    expect(error.failures[0]!.error).toBeInstanceOf(FfmpegError);
    expect((error.failures[0]!.error as FfmpegError).signal).toBe('SIGKILL');
    expect(processExists(writer.pid!)).toBe(false);
    expect((await stat(join(out, 'clip.rgb'))).size).toBe(32 * 64 * 48 * 3);
    expect((await readdir(out)).filter((f) => f.endsWith('.png'))).toHaveLength(32);
    const probed = await probeVideo(join(out, 'clip.mp4'));
    expect(probed.nb_read_frames).toBeGreaterThanOrEqual(8);
    expect(probed.nb_read_frames).toBeLessThanOrEqual(24);
  });

  it('abort leaves no ffmpeg process', async () => {
    const mp4 = new Mp4Sink({ path: join(dir, 'sink-abort.mp4') });
    const sink = new FanoutSink([mp4]);
    for (let i = 0; i < 10; i++) await sink.write(frame(i));
    const writer = await mp4.writer!;
    await sink.abort();
    expect(writer.exited).toBe(true);
    expect(processExists(writer.pid!)).toBe(false);
    expect(mp4.result).toMatchObject({ frames: 10, complete: false });
  });
});
