// Faults during a real run (issue 8): a real out-of-memory in a stage-2 forward, and the process
// SIGKILLed in the middle of stage 2. Both runs happen in a child process (the dist build, tiny
// model, CPU, 1 thread) with a state directory; the test then resumes in-process and compares with
// an uninterrupted run, byte for byte.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { StreamingT2VPipeline, Tensor, cpuMemoryStats, setCpuMemoryLimit, type GeneratedFrame, type GenerateOptions } from '../../lib/index.js';
import { ROOT, ensureDistBuilt } from '../helpers/dist-build.js';

vi.setConfig({ testTimeout: 240_000, hookTimeout: 240_000 });

const CHILD = join(ROOT, 'test', 'fixtures', 'scripts', 'generate-child.mjs');
const FAST = { stage1: { steps: 2 }, stage2: { steps: 2 }, enhance: { steps: 2 } } satisfies Partial<GenerateOptions>;
const PROMPT = 'a red circle bouncing to the right on a blue striped background';
const FRAME_BYTES = 64 * 64 * 3;
const WINDOW = 8;

type ChildEvent = { event: string; window?: number; framesDone?: number; [k: string]: unknown };

let pipe: StreamingT2VPipeline;
const dirs: string[] = [];
beforeAll(async () => {
  ensureDistBuilt();
  pipe = await StreamingT2VPipeline.load({ device: 'cpu', threads: 1 });
});
afterAll(() => {
  pipe?.dispose();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'st2v-faults-'));
  dirs.push(d);
  return d;
}

async function collect(options: GenerateOptions): Promise<GeneratedFrame[]> {
  const out: GeneratedFrame[] = [];
  for await (const f of pipe.generate(options)) out.push(f);
  return out;
}

function same(a: GeneratedFrame[], b: GeneratedFrame[]): boolean {
  return a.length === b.length && a.every((f, i) => f.stage === b[i]!.stage && f.index === b[i]!.index && Buffer.from(f.data).equals(Buffer.from(b[i]!.data)));
}

/**
 * Runs the child script; `onEvent` sees every JSON line and may return 'kill' to SIGKILL the child.
 * Resolves with the events, the exit code and the signal.
 */
function runChild(spec: unknown, onEvent: (e: ChildEvent) => 'kill' | void = () => {}, env: NodeJS.ProcessEnv = process.env): Promise<{ events: ChildEvent[]; code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'], env });
    const events: ChildEvent[] = [];
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const e = JSON.parse(line) as ChildEvent;
      events.push(e);
      if (onEvent(e) === 'kill') child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ events, code, signal, stderr }));
  });
}

describe('out of memory in a stage-2 forward (CPU memory limit; deterministic)', () => {
  it('rejects with OutOfMemoryError naming stage2 and the window; the frames so far are kept and the run resumes to the uninterrupted video', async () => {
    const run = { prompt: PROMPT, numFrames: 48, seed: 21, ...FAST, enhance: false } satisfies GenerateOptions;
    const reference = await collect(run);
    const stateDir = tempDir();
    const before = Tensor.liveCount();
    const got: GeneratedFrame[] = [];
    let error: unknown;
    try {
      for await (const f of pipe.generate({ ...run, stateDir })) {
        got.push(f);
        // After the first stage-2 window (frames 16..23), cap CPU tensor memory just above what is in
        // use: the next window's forward needs megabytes of activations and libtorch's allocation fails.
        if (f.index === 23) setCpuMemoryLimit(cpuMemoryStats().allocated + 256 * 1024);
      }
    } catch (e) {
      error = e;
    } finally {
      setCpuMemoryLimit(null);
    }
    expect(error).toMatchObject({ name: 'OutOfMemoryError', code: 'ERR_OUT_OF_MEMORY', stage: 'stage2', device: 'cpu' });
    const window = (error as { window: number }).window;
    expect(window).toBeGreaterThanOrEqual(2);
    expect((error as Error).message).toMatch(new RegExp(`^Out of memory on cpu in stage2 window ${window} \\(${16 + 8 * (window - 1)} preview frames done`));
    expect((error as Error).message).toContain('CPU memory limit: not enough memory');
    expect(cpuMemoryStats().refused).toBeGreaterThan(0);
    // every frame before the failing window was delivered, and equals the uninterrupted run's
    expect(got.length).toBe(16 + 8 * (window - 1));
    expect(same(got, reference.slice(0, got.length))).toBe(true);
    expect(Tensor.liveCount()).toBe(before);
    // the state directory resumes after the last complete window, to the uninterrupted run's frames
    const state = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { framesDone: number };
    expect(state.framesDone).toBe(got.length);
    const resumed = await collect({ ...run, stateDir });
    expect(same(resumed, reference)).toBe(true);
  });
});

// Provoking a real allocator failure by clamping the whole process's address space (RLIMIT_AS) is not
// deterministic: in a fresh CI clone all 4 attempts crashed inside libtorch (SIGSEGV) before the error
// could be thrown. It stays as an opt-in stress test (STREAMINGT2V_OOM_TEST=1); the deterministic
// oversized-request test below covers the OutOfMemoryError translation on every run.
const oomStress = process.env.STREAMINGT2V_OOM_TEST === '1';
describe.runIf(oomStress)('out of memory in a stage-2 forward (real allocator failure; opt-in: STREAMINGT2V_OOM_TEST=1)', () => {
  it('rejects with OutOfMemoryError naming the stage and window; the frames so far are kept and a rerun resumes to the uninterrupted video', async () => {
    const run = { prompt: PROMPT, numFrames: 40, seed: 21, ...FAST };
    // When window 2 starts, the child clamps its own address space (RLIMIT_AS) to what it has mapped
    // plus 2 MiB. A fixed glibc mmap threshold makes every buffer >= 64 KiB a fresh mapping (no reuse
    // of freed heap space), so a later large tensor allocation fails inside libtorch: in the rest of
    // stage 2 or, where that fits in the margin, in stage 3. With the whole process at its address
    // space limit, a small allocation elsewhere (V8, libstdc++) can also fail first and kill the
    // child (seen about 1 run in 4: SIGSEGV or std::bad_alloc terminate): such attempts are counted
    // and retried, and at least one attempt of 4 must end with the typed error.
    const env = { ...process.env, MALLOC_MMAP_THRESHOLD_: '65536' };
    delete env.LD_PRELOAD; // glibc malloc, whatever the caller preloads
    const crashes: string[] = [];
    let error: ChildEvent | undefined;
    let stateDir = '';
    for (let attempt = 0; attempt < 4 && error === undefined; attempt++) {
      stateDir = tempDir();
      const child = await runChild({ run: { ...run, stateDir }, oomAtWindow: 2, oomMarginMiB: 2 }, undefined, env);
      expect(child.events.some((e) => e.event === 'limited'), child.stderr).toBe(true);
      expect(child.events.some((e) => e.event === 'done'), 'the run must not survive the limit').toBe(false);
      error = child.events.find((e) => e.event === 'error');
      if (error === undefined) crashes.push(`code ${child.code} signal ${child.signal}: ${child.stderr.trim().split('\n').pop() ?? ''}`);
      else expect(child.code).toBe(1); // a rejected promise, not a crash or abort()
    }
    if (crashes.length > 0) console.log(`OOM child attempts that crashed instead of rejecting: ${crashes.join(' | ')}`);
    expect(error, `crashed attempts: ${crashes.join(' | ')}`).toBeDefined();
    expect(error).toMatchObject({ name: 'OutOfMemoryError', code: 'ERR_OUT_OF_MEMORY', device: 'cpu' });
    expect(['stage2', 'stage3']).toContain(error!.stage);
    const window = error!.window as number;
    expect(error!.stage === 'stage2' ? window >= 2 : window === 0).toBe(true);
    expect(error!.message).toMatch(new RegExp(`^Out of memory on cpu in ${String(error!.stage)} window ${window} \\(\\d+ preview frames done;`));
    expect(error!.message).toMatch(/can't allocate memory|allocation failed/); // libtorch's own allocator message is kept
    expect(error!.cause).toMatchObject({ code: 'ERR_OUT_OF_MEMORY' });

    // the preview frames made before the failing window are on disk, and the saved state points after them
    const expectedDone = error!.stage === 'stage3' ? 40 : 16 + 8 * (window - 1);
    const state = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { framesDone: number };
    expect(state.framesDone).toBe(expectedDone);
    expect(statSync(join(stateDir, 'preview.rgb')).size).toBeGreaterThanOrEqual(expectedDone * FRAME_BYTES);

    // without the limit, the same call resumes and completes with the uninterrupted run's frames
    const reference = await collect(run);
    const resumed = await collect({ ...run, stateDir });
    expect(resumed.length).toBe(80);
    expect(same(resumed, reference)).toBe(true);
  });

  it('the translation keeps other errors as they are (an InvalidArgument from the state dir is not an OOM)', async () => {
    const stateDir = tempDir();
    await collect({ prompt: PROMPT, numFrames: 17, seed: 1, ...FAST, enhance: false, stateDir });
    await expect(collect({ prompt: PROMPT, numFrames: 17, seed: 2, ...FAST, enhance: false, stateDir })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
  });
});

describe('SIGKILL in the middle of stage 2', () => {
  it('resuming from the state directory loses at most one window and gives the same video as an uninterrupted run', async () => {
    const run = { prompt: PROMPT, numFrames: 64, seed: 33, ...FAST };
    const stateDir = tempDir();
    let reported = 0;
    const child = await runChild({ run: { ...run, stateDir } }, (e) => {
      if (e.event !== 'window') return;
      reported = e.framesDone!;
      if (e.window! >= 2) return 'kill';
    });
    expect(child.signal, `child output: ${JSON.stringify(child.events)}\n${child.stderr}`).toBe('SIGKILL');
    expect(child.events.some((e) => e.event === 'done')).toBe(false);
    expect(reported).toBeGreaterThanOrEqual(32); // stage 1 (16) + windows 1 and 2
    expect(reported).toBeLessThan(64); // killed before the end of stage 2
    expect(existsSync(join(stateDir, 'state.json'))).toBe(true);
    const state = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { framesDone: number };
    expect(state.framesDone).toBeGreaterThanOrEqual(reported - WINDOW);

    const before = Tensor.liveCount();
    const resumed = await collect({ ...run, stateDir });
    const reference = await collect(run);
    expect(resumed.length).toBe(128);
    expect(same(resumed, reference)).toBe(true);
    expect(Tensor.liveCount()).toBe(before);
  });
});

describe('out of memory from an oversized request (deterministic)', () => {
  it('a stage-1 allocation that cannot succeed rejects with OutOfMemoryError naming stage1 window 0; tensors freed', async () => {
    // A copy of the tiny model directory whose manifest asks stage 1 for 1,048,576² frames: the stage-1
    // latents alone would need 4.4 TB, so libtorch's CPU allocator refuses the request.
    const dir = tempDir();
    const { cpSync, writeFileSync } = await import('node:fs');
    cpSync(join(ROOT, 'models', 'tiny'), dir, { recursive: true });
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { defaults: { stage1: { height: number; width: number } } };
    manifest.defaults.stage1.height = 1 << 20;
    manifest.defaults.stage1.width = 1 << 20;
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
    const pipe = await StreamingT2VPipeline.load({ modelDir: dir, device: 'cpu', threads: 1, loadEnhancer: false, verifyChecksums: false });
    try {
      const before = Tensor.liveCount();
      const err = await (async () => {
        for await (const _ of pipe.generate({ prompt: PROMPT, numFrames: 24, ...FAST, enhance: false })) void _;
      })().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'ERR_OUT_OF_MEMORY', name: 'OutOfMemoryError', stage: 'stage1', window: 0, device: 'cpu' });
      expect((err as Error).message).toContain('stage1 window 0');
      expect((err as Error).message).toContain("can't allocate memory");
      expect(Tensor.liveCount()).toBe(before);
    } finally {
      pipe.dispose();
    }
  });
});
