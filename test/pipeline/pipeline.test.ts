// The three-stage pipeline on the tiny model directory (random weights, real libtorch, real
// ffmpeg): frame counts, determinism, streaming/backpressure, abort, resume, memories.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

// Generous: these run real (tiny) networks on 2 shared CPU cores.
vi.setConfig({ testTimeout: 240_000, hookTimeout: 120_000 });

import { Generator, StreamingT2VPipeline, Tensor, generateLongVideo, pendingNativeTasks, type GeneratedFrame, type GenerateOptions, type ProgressEvent, type StreamingT2VWarning } from '../../lib/index.js';
import { runStage2Window, stage2Context } from '../../lib/pipeline/stage2.js';
import { loadPipelineModels, type LoadedModels } from '../../lib/pipeline/model-adapter.js';
import { scratchDir } from '../helpers/scratch.js';

const FAST = { stage1: { steps: 2 }, stage2: { steps: 2 }, enhance: { steps: 2 } } satisfies Partial<GenerateOptions>;
const PROMPT = 'a red circle bouncing to the right on a blue striped background';
const hasFfprobe = spawnSync('ffprobe', ['-version']).status === 0;

let pipe: StreamingT2VPipeline;
beforeAll(async () => {
  pipe = await StreamingT2VPipeline.load({ device: 'cpu', threads: 1 }); // 1 thread: no OpenMP oversubscription on a busy 2-core CI box
});
afterAll(() => pipe?.dispose());

async function collect(options: GenerateOptions, p = pipe): Promise<GeneratedFrame[]> {
  const out: GeneratedFrame[] = [];
  for await (const f of p.generate(options)) out.push(f);
  return out;
}

function probeFrames(path: string): number {
  const r = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', path], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim()) : -1;
}

/** Live tensor count once native work has settled (polls up to 1 s for late disposals). */
async function settledLiveCount(expected: number): Promise<number> {
  for (let i = 0; i < 50 && (Tensor.liveCount() !== expected || pendingNativeTasks() !== 0); i++) await new Promise((r) => setTimeout(r, 20));
  return Tensor.liveCount();
}

function same(a: GeneratedFrame[], b: GeneratedFrame[]): boolean {
  return a.length === b.length && a.every((f, i) => f.stage === b[i]!.stage && f.index === b[i]!.index && Buffer.from(f.data).equals(Buffer.from(b[i]!.data)));
}

describe('frame counts (rule: ceil((N-16)/8) windows, the last one truncated; N <= 16 is stage 1 only)', () => {
  for (const n of [1, 16, 20, 24, 30]) {
    it(`N = ${n}: ${n} preview frames at 64x64 and ${n} final frames at 128x128, in order`, async () => {
      const frames = await collect({ prompt: PROMPT, numFrames: n, ...FAST });
      const preview = frames.filter((f) => f.stage === 'preview');
      const final = frames.filter((f) => f.stage === 'final');
      expect(preview.map((f) => f.index)).toEqual([...Array(n).keys()]);
      expect(final.map((f) => f.index)).toEqual([...Array(n).keys()]);
      expect(preview.every((f) => f.width === 64 && f.height === 64 && f.data.length === 64 * 64 * 3)).toBe(true);
      expect(final.every((f) => f.width === 128 && f.height === 128 && f.data.length === 128 * 128 * 3)).toBe(true);
      // all preview frames come before any final frame (stage 3 needs the whole preview)
      expect(frames.findIndex((f) => f.stage === 'final')).toBe(n);
    });
  }

  it('enhance: false yields only the preview', async () => {
    const frames = await collect({ prompt: PROMPT, numFrames: 26, ...FAST, enhance: false });
    expect(frames.length).toBe(26);
    expect(frames.every((f) => f.stage === 'preview')).toBe(true);
  });
});

describe('prompt vocabulary (manifest prompt_words)', () => {
  it.runIf(existsSync(join('models', 'default', 'manifest.json')))('the default model warns once, before any network call, about the words it never saw; known words and models without a list do not warn', async () => {
    const events: string[] = [];
    const warnings: StreamingT2VWarning[] = [];
    const onWarning = (w: StreamingT2VWarning) => {
      warnings.push(w);
      events.push('warning');
    };
    const onProgress = () => events.push('progress');
    const frames = await collect({ prompt: 'a red cat moving LEFT on the moon', numFrames: 1, ...FAST, enhance: false, onWarning, onProgress });
    expect(frames.length).toBe(1);
    expect(warnings.map((w) => [w.code, w.words])).toEqual([['PROMPT_OUTSIDE_VOCABULARY', ['cat', 'moon']]]);
    expect(warnings[0]!.message).toContain('The model "default" was trained on a closed vocabulary and never saw the words "cat", "moon"');
    expect(events[0]).toBe('warning');
    expect(events.filter((e) => e === 'warning').length).toBe(1);
    warnings.length = 0;
    await collect({ prompt: 'a red circle moving to the left on a plain blue background', negativePrompt: 'a green square', numFrames: 1, ...FAST, enhance: false, onWarning });
    await collect({ prompt: 'a red circle', negativePrompt: 'blurry', numFrames: 1, ...FAST, enhance: false, onWarning });
    expect(warnings.map((w) => w.words)).toEqual([['blurry']]);
    const tiny = await StreamingT2VPipeline.load({ modelDir: join('models', 'tiny'), device: 'cpu', threads: 1, loadEnhancer: false });
    try {
      warnings.length = 0;
      await collect({ prompt: 'a cat playing the piano', numFrames: 1, ...FAST, enhance: false, onWarning }, tiny);
      expect(warnings).toEqual([]); // models/tiny has no prompt_words: an open vocabulary
    } finally {
      tiny.dispose();
    }
  });
});

describe('determinism', () => {
  it('same seed -> identical bytes; different seed -> different frames', async () => {
    const a = await collect({ prompt: PROMPT, numFrames: 24, seed: 5, ...FAST });
    const b = await collect({ prompt: PROMPT, numFrames: 24, seed: 5, ...FAST });
    const c = await collect({ prompt: PROMPT, numFrames: 24, seed: 6, ...FAST });
    expect(same(a, b)).toBe(true);
    expect(same(a, c)).toBe(false);
    // windows differ from each other too: stage 2 draws fresh noise per window
    expect(Buffer.from(a[16]!.data).equals(Buffer.from(a[8]!.data))).toBe(false);
  });
});

describe('streaming', () => {
  // Without the cut guard (the paper's path; the guard holds stage 1's frames until window 1 is accepted: cut-guard.test.ts).
  it('the first frames arrive before stage 2 finishes, and a slow consumer pauses generation', async () => {
    const events: ProgressEvent[] = [];
    const it = pipe.generate({ prompt: PROMPT, numFrames: 40, ...FAST, stage2: { ...FAST.stage2, cutRetries: 0 }, enhance: false, onProgress: (e) => events.push(e) })[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    expect((first.value as GeneratedFrame).index).toBe(0);
    // stage 1 is done, no stage-2 window has started yet
    expect(events.some((e) => e.phase === 'stage2')).toBe(false);
    const seen = events.length;
    await new Promise((r) => setTimeout(r, 400)); // the consumer is slow: nothing must run meanwhile
    expect(events.length).toBe(seen);
    expect(pendingNativeTasks()).toBe(0);
    let count = 1;
    for (let r = await it.next(); !r.done; r = await it.next()) count++;
    expect(count).toBe(40);
    expect(events.filter((e) => e.phase === 'stage2' && e.step === undefined).map((e) => e.window)).toEqual([1, 2, 3]);
  });
});

describe('abort', () => {
  for (const phase of ['stage1', 'stage2', 'stage3'] as const) {
    it(`abort during ${phase}: AbortError-like rejection with the reason, partial MP4 valid, tensors freed`, async () => {
      const before = Tensor.liveCount();
      const dir = scratchDir('st2v-abort-');
      const controller = new AbortController();
      const reason = new Error(`stop in ${phase}`);
      const onProgress = (e: ProgressEvent) => {
        if (e.phase === phase && (phase !== 'stage2' || (e.window ?? 0) >= 2)) controller.abort(reason);
      };
      const err = await generateLongVideo({
        pipeline: pipe,
        prompt: PROMPT,
        numFrames: 40,
        ...FAST,
        output: join(dir, 'v.mp4'),
        signal: controller.signal,
        onProgress,
      }).catch((e: unknown) => e);
      expect(err).toBe(reason);
      expect(await settledLiveCount(before)).toBe(before);
      expect(pendingNativeTasks()).toBe(0);
      if (hasFfprobe && phase !== 'stage1') {
        const frames = probeFrames(join(dir, 'v.preview.mp4'));
        expect(frames).toBeGreaterThanOrEqual(phase === 'stage3' ? 40 : 1);
      }
    });
  }
});

describe('resume', () => {
  // replaceOverlap 1: the replacement noise comes from the stage-2 generator too, so its persisted state must cover it
  it.each([0, 1])('a run aborted in the middle of stage 2 resumes from its state directory and equals the uninterrupted run (stage2.replaceOverlap %s)', async (replaceOverlap) => {
    const opts = { prompt: PROMPT, numFrames: 48, seed: 11, ...FAST, stage2: { ...FAST.stage2, replaceOverlap } };
    const reference = await collect(opts);
    const stateDir = scratchDir('st2v-state-');
    const controller = new AbortController();
    const partial: GeneratedFrame[] = [];
    const err = await (async () => {
      for await (const f of pipe.generate({ ...opts, stateDir, signal: controller.signal })) {
        partial.push(f);
        if (f.index === 30) controller.abort(new Error('crash'));
      }
    })().catch((e: unknown) => e);
    expect((err as Error).message).toBe('crash');
    expect(readdirSync(stateDir)).toContain('state.json');
    const resumed = await collect({ ...opts, stateDir });
    expect(same(resumed, reference)).toBe(true);
    // a state directory of another run is refused with a clear error
    await expect(collect({ ...opts, seed: 12, stateDir })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
  });
});

describe('memories reach the model', () => {
  let models: LoadedModels;
  beforeAll(async () => {
    models = await loadPipelineModels({ device: 'cpu', verifyChecksums: false, loadEnhancer: false });
  });
  afterAll(() => models?.dispose());

  async function window(cond: Tensor, anchorTokens: Tensor, grey: Tensor, text: Tensor): Promise<Float32Array> {
    using context = await stage2Context(text, grey, anchorTokens);
    using gen = new Generator(3);
    using out = await runStage2Window(models, { context, condFrames: cond, generator: gen, steps: 2, guidance: 7.5, eta: 1 });
    return out.toFloat32Array();
  }

  it('changing the conditioning frames (CAM) or the anchor tokens (APM) changes the window', async () => {
    using text = await Tensor.randn([2, 77, 64], 1);
    using grey = await Tensor.randn([1, 16, 64], 2);
    using anchorA = await Tensor.randn([1, 16, 64], 3);
    using anchorB = await Tensor.randn([1, 16, 64], 4);
    using condA = await Tensor.full([1, 3, 8, 64, 64], -0.5);
    using condB = await Tensor.full([1, 3, 8, 64, 64], 0.5);
    const base = await window(condA, anchorA, grey, text);
    const again = await window(condA, anchorA, grey, text);
    const otherCond = await window(condB, anchorA, grey, text);
    const otherAnchor = await window(condA, anchorB, grey, text);
    const diff = (x: Float32Array, y: Float32Array) => x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i]!)), 0);
    expect(diff(base, again)).toBe(0);
    // The same inputs give bit-identical outputs (diff exactly 0), so any difference is the memory's
    // effect. With random tiny weights the CAM mergers are small, so the effect is small but real.
    expect(diff(base, otherCond)).toBeGreaterThan(1e-7);
    expect(diff(base, otherAnchor)).toBeGreaterThan(1e-7);
  });
});

describe('pipeline lifecycle', () => {
  it('two concurrent runs on one pipeline equal sequential runs (FIFO admission)', async () => {
    const a = { prompt: PROMPT, numFrames: 20, seed: 1, ...FAST, enhance: false } as const;
    const b = { prompt: 'a green square moving left', numFrames: 20, seed: 2, ...FAST, enhance: false } as const;
    const [ca, cb] = await Promise.all([collect(a), collect(b)]);
    expect(same(ca, await collect(a))).toBe(true);
    expect(same(cb, await collect(b))).toBe(true);
  });

  it('dispose during a run rejects it with ERR_DISPOSED and frees everything', async () => {
    const own = await StreamingT2VPipeline.load({ device: 'cpu', verifyChecksums: false });
    const before = Tensor.liveCount();
    const run = collect({ prompt: PROMPT, numFrames: 40, ...FAST, onProgress: (e) => e.phase === 'stage2' && own.dispose() }, own);
    await expect(run).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
    expect(await settledLiveCount(before)).toBe(before);
    await expect(collect({ prompt: PROMPT }, own)).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
  });
});
