// generateLongVideo / streamLongVideo with a read-ahead between generation and the sinks (issue 7,
// overlap), on models/tiny with real libtorch and real ffmpeg: the same bytes and files whatever
// the read-ahead, generation really overlaps a slow sink, a failing sink stops the run at once,
// abort still works, and bad values are refused before any work.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { StreamingT2VPipeline, Tensor, generateLongVideo, pendingNativeTasks, streamLongVideo, type GeneratedFrame, type GenerateOptions, type ProgressEvent } from '../../lib/index.js';
import { scratchDir } from '../helpers/scratch.js';

vi.setConfig({ testTimeout: 240_000, hookTimeout: 120_000 });

const MODEL = 'models/tiny';
const FAST = { stage1: { steps: 2 }, stage2: { steps: 2 }, enhance: { steps: 2 } } satisfies Partial<GenerateOptions>;
const PROMPT = 'a red circle bouncing to the right on a blue striped background';
const hasFfprobe = spawnSync('ffprobe', ['-version']).status === 0;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let pipe: StreamingT2VPipeline;
beforeAll(async () => {
  pipe = await StreamingT2VPipeline.load({ modelDir: MODEL, device: 'cpu', threads: 1 });
});
afterAll(() => pipe?.dispose());

/** ffprobe's decoded frame count and an MD5 of the decoded RGB24 frames. */
function decodeMp4(path: string): { frames: number; md5: string } {
  const probe = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', path], { encoding: 'utf8' });
  const raw = spawnSync('ffmpeg', ['-v', 'error', '-i', path, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 1 << 28 });
  return { frames: probe.status === 0 ? Number(probe.stdout.trim()) : -1, md5: createHash('md5').update(raw.stdout).digest('hex') };
}

function hashDir(dir: string): string {
  const h = createHash('md5');
  for (const name of readdirSync(dir).sort()) h.update(name).update(readFileSync(join(dir, name)));
  return h.digest('hex');
}

/** Live tensor count once native work has settled (polls up to 1 s for late disposals). */
async function settledLiveCount(expected: number): Promise<number> {
  for (let i = 0; i < 50 && (Tensor.liveCount() !== expected || pendingNativeTasks() !== 0); i++) await sleep(20);
  return Tensor.liveCount();
}

describe('readAhead: same output', () => {
  it('frames, PNGs and MP4s are identical with readAhead 0, 8 and 64; no handed-out frame is overwritten later', async () => {
    const runs: { frames: GeneratedFrame[]; copies: Buffer[]; dir: string }[] = [];
    for (const readAhead of [0, 8, 64]) {
      const dir = scratchDir(`st2v-ahead-${readAhead}-`);
      const frames: GeneratedFrame[] = [];
      const copies: Buffer[] = [];
      const result = await generateLongVideo({
        pipeline: pipe,
        prompt: PROMPT,
        numFrames: 40,
        seed: 3,
        ...FAST,
        output: join(dir, 'v.mp4'),
        pngDir: join(dir, 'png'),
        readAhead,
        onFrame: async (f) => {
          frames.push(f);
          copies.push(Buffer.from(f.data)); // the bytes as the sinks saw them
          if (f.index % 5 === 0) await sleep(5); // a slow consumer, so that the read-ahead fills up
        },
      });
      expect(result.frames).toEqual({ preview: 40, final: 40 });
      runs.push({ frames, copies, dir });
    }
    const [base, ...others] = runs;
    // Every frame's buffer still holds the bytes it had when it was handed out, after the whole run.
    for (const run of runs) expect(run.frames.every((f, i) => Buffer.from(f.data).equals(run.copies[i]!))).toBe(true);
    for (const run of others) {
      expect(run.frames.map((f) => `${f.stage}${f.index}`)).toEqual(base!.frames.map((f) => `${f.stage}${f.index}`));
      expect(run.copies.every((c, i) => c.equals(base!.copies[i]!))).toBe(true);
      for (const stage of ['preview', 'final']) expect(hashDir(join(run.dir, 'png', stage))).toBe(hashDir(join(base!.dir, 'png', stage)));
    }
    if (hasFfprobe) {
      for (const file of ['v.mp4', 'v.preview.mp4']) {
        const ref = decodeMp4(join(base!.dir, file));
        expect(ref.frames).toBe(40);
        for (const run of others) expect(decodeMp4(join(run.dir, file))).toEqual(ref);
      }
    }
  });
});

describe('readAhead: overlap', () => {
  for (const readAhead of [0, 8]) {
    it(`readAhead ${readAhead}: the networks ${readAhead === 0 ? 'wait for' : 'keep running during'} a slow frame write`, async () => {
      const events: ProgressEvent[] = [];
      let during = -1;
      await generateLongVideo({
        pipeline: pipe,
        prompt: PROMPT,
        numFrames: 32,
        ...FAST,
        enhance: false,
        readAhead,
        onProgress: (e) => events.push(e),
        onFrame: async (f) => {
          if (f.index !== 12) return;
          // frames 13..15 are queued; with room for more, the producer starts window 1 now
          const before = events.length;
          await sleep(1000);
          during = events.filter((e, i) => i >= before && e.phase === 'stage2').length;
        },
      });
      if (readAhead === 0) expect(during).toBe(0);
      else expect(during).toBeGreaterThan(0);
    });
  }
});

describe('readAhead: a failing sink stops the run', () => {
  it('onFrame throwing mid-run: rejects with that error, the window in flight is aborted, nothing runs afterwards, tensors freed', async () => {
    const before = Tensor.liveCount();
    const events: ProgressEvent[] = [];
    const failure = new Error('upload failed');
    const window3Steps = () => events.filter((e) => e.phase === 'stage2' && e.window === 3 && e.step !== undefined).length;
    const err = await generateLongVideo({
      pipeline: pipe,
      prompt: PROMPT,
      numFrames: 80,
      ...FAST,
      stage2: { steps: 6 },
      enhance: false,
      readAhead: 8,
      onProgress: (e) => events.push(e),
      onFrame: async (f) => {
        if (f.index !== 24) return;
        // taking frame 24 made room for frame 32: window 3 runs now; fail once it is under way
        for (let i = 0; i < 1000 && window3Steps() === 0; i++) await sleep(10);
        throw failure;
      },
    }).catch((e: unknown) => e);
    expect(err).toBe(failure);
    expect(pendingNativeTasks()).toBe(0); // the read-ahead waited for the aborted window before rejecting
    const seen = events.length;
    await sleep(500);
    expect(events.length).toBe(seen); // no further network work
    // window 3 was in flight and was cut short (at its next step), not finished; no window after it started
    expect(window3Steps()).toBeGreaterThan(0);
    expect(window3Steps()).toBeLessThan(6);
    const windowsDone = events.filter((e) => e.phase === 'stage2' && e.step === undefined).map((e) => e.window ?? 0);
    expect(Math.max(...windowsDone)).toBe(2);
    expect(await settledLiveCount(before)).toBe(before);
  });

  it('a PNG sink whose directory disappears mid-run: rejects with its FrameSinkError and generation stops', async () => {
    const dir = scratchDir('st2v-ahead-sink-');
    const png = join(dir, 'png');
    const events: ProgressEvent[] = [];
    const before = Tensor.liveCount();
    const err = await generateLongVideo({
      pipeline: pipe,
      prompt: PROMPT,
      numFrames: 80,
      ...FAST,
      enhance: false,
      pngDir: png,
      readAhead: 8,
      onProgress: (e) => events.push(e),
      onFrame: (f) => {
        if (f.index === 10) rmSync(png, { recursive: true, force: true });
      },
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'FrameSinkError' });
    expect(pendingNativeTasks()).toBe(0);
    const windowsDone = events.filter((e) => e.phase === 'stage2' && e.step === undefined).map((e) => e.window ?? 0);
    expect(Math.max(0, ...windowsDone)).toBeLessThanOrEqual(1); // frame 11 failed: at most frames up to 19 were pulled
    expect(await settledLiveCount(before)).toBe(before);
  });
});

describe('readAhead: abort', () => {
  it('abort during stage 2: rejects with the reason, every generated frame is written, nothing runs afterwards', async () => {
    const before = Tensor.liveCount();
    const dir = scratchDir('st2v-ahead-abort-');
    const controller = new AbortController();
    const reason = new Error('stop');
    const events: ProgressEvent[] = [];
    let written = 0;
    const err = await generateLongVideo({
      pipeline: pipe,
      prompt: PROMPT,
      numFrames: 64,
      ...FAST,
      enhance: false,
      output: join(dir, 'v.mp4'),
      readAhead: 8,
      signal: controller.signal,
      onProgress: (e) => {
        events.push(e);
        if (e.phase === 'stage2' && (e.window ?? 0) >= 3) controller.abort(reason);
      },
      onFrame: async () => {
        written++;
        await sleep(10);
      },
    }).catch((e: unknown) => e);
    expect(err).toBe(reason);
    expect(pendingNativeTasks()).toBe(0);
    const seen = events.length;
    await sleep(300);
    expect(events.length).toBe(seen);
    expect(await settledLiveCount(before)).toBe(before);
    // the frames generated before the abort (stage 1 + windows 1, 2) were all delivered
    expect(written).toBe(events.filter((e) => e.phase === 'stage2' && e.step === undefined).at(-1)!.framesDone);
    expect(written).toBeGreaterThanOrEqual(32);
    if (hasFfprobe) expect(decodeMp4(join(dir, 'v.mp4')).frames).toBeGreaterThanOrEqual(1);
  });

  it('an already-aborted signal rejects with its reason before any frame', async () => {
    const reason = new Error('too late');
    let frames = 0;
    const err = await generateLongVideo({ pipeline: pipe, prompt: PROMPT, numFrames: 24, ...FAST, readAhead: 8, signal: AbortSignal.abort(reason), onFrame: () => void frames++ }).catch((e: unknown) => e);
    expect(err).toBe(reason);
    expect(frames).toBe(0);
  });
});

describe('readAhead: streamLongVideo', () => {
  it('readAhead 8 streams the same frames as the pipeline; breaking early stops and frees the run', async () => {
    const opts = { prompt: PROMPT, numFrames: 32, seed: 9, ...FAST, enhance: false as const };
    const reference: Buffer[] = [];
    for await (const f of pipe.generate(opts)) reference.push(Buffer.from(f.data));
    const streamed: Buffer[] = [];
    for await (const f of streamLongVideo({ ...opts, modelDir: MODEL, device: 'cpu', threads: 1, readAhead: 8 })) streamed.push(Buffer.from(f.data));
    expect(streamed.length).toBe(32);
    expect(streamed.every((b, i) => b.equals(reference[i]!))).toBe(true);
    const before = Tensor.liveCount();
    let n = 0;
    for await (const _ of streamLongVideo({ ...opts, numFrames: 80, modelDir: MODEL, device: 'cpu', threads: 1, readAhead: 8 })) if (++n === 18) break;
    expect(pendingNativeTasks()).toBe(0);
    expect(await settledLiveCount(before)).toBe(before);
  });
});

describe('readAhead: validation', () => {
  it('refuses bad values and misspelt keys before any work', async () => {
    const dir = join(scratchDir('st2v-ahead-bad-'), 'never');
    const base = { pipeline: pipe, prompt: PROMPT, output: join(dir, 'v.mp4') };
    for (const bad of [-1, 1.5, '8', 4097, NaN, null]) {
      await expect(generateLongVideo({ ...base, readAhead: bad as number })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG', message: expect.stringMatching(/^Expected an integer in \[0, 4096\] for `readAhead` but received/) });
    }
    await expect(generateLongVideo({ ...base, readAhead: -1 })).rejects.toThrow('Expected an integer in [0, 4096] for `readAhead` but received -1 of type number');
    await expect(generateLongVideo({ ...base, readahead: 8 } as never)).rejects.toThrow('Unknown option `readahead` (did you mean `readAhead`?)');
    await expect(streamLongVideo({ prompt: PROMPT, readAhead: -2, modelDir: MODEL }).next()).rejects.toThrow('for `readAhead` but received -2');
    expect(existsSync(dir)).toBe(false);
  });
});
