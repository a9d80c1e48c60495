// Concurrency (issue 8): 4 concurrent generateLongVideo() calls sharing one loaded pipeline equal
// their sequential runs, with maxConcurrentRuns 1 (FIFO) and 4; and a pipeline loaded inside a
// worker_thread (dist build) runs a tiny generation with the same frames as the main thread.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { StreamingT2VPipeline, Tensor, generateLongVideo, pendingNativeTasks, type GeneratedFrame, type GenerateOptions, type ProgressEvent } from '../../lib/index.js';
import { DIST_INDEX, ROOT, ensureDistBuilt } from '../helpers/dist-build.js';

vi.setConfig({ testTimeout: 240_000, hookTimeout: 240_000 });

const FAST = { stage1: { steps: 2 }, stage2: { steps: 2 }, enhance: { steps: 2 } } satisfies Partial<GenerateOptions>;
const RUNS: GenerateOptions[] = [
  { prompt: 'a red circle bouncing to the right', numFrames: 24, seed: 1, ...FAST, enhance: false },
  { prompt: 'a green square moving left', numFrames: 20, seed: 2, ...FAST },
  { prompt: 'a blue triangle spinning', numFrames: 17, seed: 3, ...FAST, enhance: false },
  { prompt: 'a yellow star falling', numFrames: 16, seed: 4, ...FAST },
];

function digest(frames: GeneratedFrame[]): string[] {
  return frames.map((f) => `${f.stage}:${f.index}:${createHash('sha256').update(f.data).digest('hex')}`);
}

async function viaLongVideo(pipeline: StreamingT2VPipeline, run: GenerateOptions, onProgress?: (e: ProgressEvent) => void): Promise<string[]> {
  const frames: GeneratedFrame[] = [];
  // onFrame gets views into native output buffers: copy them
  await generateLongVideo({ pipeline, ...run, ...(onProgress === undefined ? {} : { onProgress }), onFrame: (f) => void frames.push({ ...f, data: Uint8Array.from(f.data) }) });
  return digest(frames);
}

for (const maxConcurrentRuns of [1, 4]) {
  describe(`4 concurrent generateLongVideo() calls on one pipeline, maxConcurrentRuns ${maxConcurrentRuns}`, () => {
    let pipe: StreamingT2VPipeline;
    beforeAll(async () => {
      pipe = await StreamingT2VPipeline.load({ device: 'cpu', threads: 1, verifyChecksums: false, maxConcurrentRuns });
    });
    afterAll(() => pipe?.dispose());

    it('all complete with outputs equal to sequential runs', async () => {
      const before = Tensor.liveCount();
      const sequential: string[][] = [];
      for (const run of RUNS) sequential.push(await viaLongVideo(pipe, run));
      // which runs were in flight at once (a run is "started" from its first progress event to its end)
      let active = 0;
      let peak = 0;
      const order: number[] = [];
      const concurrent = await Promise.all(
        RUNS.map(async (run, i) => {
          let started = false;
          try {
            return await viaLongVideo(pipe, run, () => {
              if (started) return;
              started = true;
              order.push(i);
              peak = Math.max(peak, ++active);
            });
          } finally {
            if (started) active--;
          }
        }),
      );
      for (let i = 0; i < RUNS.length; i++) expect(concurrent[i], `run ${i}`).toEqual(sequential[i]);
      expect(peak).toBe(Math.min(maxConcurrentRuns, RUNS.length));
      if (maxConcurrentRuns === 1) expect(order).toEqual([0, 1, 2, 3]); // FIFO admission
      expect(Tensor.liveCount()).toBe(before);
      expect(pendingNativeTasks()).toBe(0);
    });
  });
}

describe('worker_threads', () => {
  beforeAll(() => ensureDistBuilt());

  it('a pipeline loaded inside a Worker runs a tiny generation with the main thread frames', async () => {
    const run = { prompt: 'a red circle bouncing to the right', numFrames: 20, seed: 7, stage1: { steps: 1 }, stage2: { steps: 1 }, enhance: { steps: 1 } };
    const worker = new Worker(join(ROOT, 'test', 'fixtures', 'scripts', 'worker-generate.mjs'), { workerData: { dist: pathToFileURL(DIST_INDEX).href, run } });
    const result = await new Promise<{ frames?: number; sha256?: string; liveAfter?: number; error?: unknown }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`worker exited with ${code} before answering`)));
    });
    await worker.terminate();
    expect(result.error).toBeUndefined();
    expect(result.frames).toBe(40);
    expect(result.liveAfter).toBe(0);
    // the same run on the main thread gives the same bytes
    await using pipe = await StreamingT2VPipeline.load({ device: 'cpu', threads: 1, verifyChecksums: false });
    const hash = createHash('sha256');
    for await (const f of pipe.generate(run)) hash.update(`${f.stage}:${f.index}:`).update(f.data);
    expect(result.sha256).toBe(hash.digest('hex'));
  });
});
