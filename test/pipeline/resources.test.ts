// Resources over many generations in one process (issue 8): 100 tiny runs (17 frames, 1-step
// stages, no enhancement) on one pipeline -> native tensor count back to the baseline after every
// run, and RSS after warm-up grows by at most 5%. The longer soak is bench/soak.mjs.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { StreamingT2VPipeline, Tensor, pendingNativeTasks, type GenerateOptions } from '../../lib/index.js';

vi.setConfig({ testTimeout: 300_000, hookTimeout: 120_000 });

const RUNS = 100;
const WARMUP = 20;
const OPTS: GenerateOptions = { prompt: 'a red circle bouncing', numFrames: 17, stage1: { steps: 1 }, stage2: { steps: 1 }, enhance: false };

let pipe: StreamingT2VPipeline;
beforeAll(async () => {
  pipe = await StreamingT2VPipeline.load({ device: 'cpu', threads: 1, verifyChecksums: false });
});
afterAll(() => pipe?.dispose());

describe('100 generations in one process', () => {
  it('tensors back to baseline after each run; RSS growth after warm-up <= 5%', async () => {
    const baseline = Tensor.liveCount();
    const rss: number[] = [];
    const counts: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      let frames = 0;
      for await (const f of pipe.generate({ ...OPTS, seed: i })) frames += f.data.length > 0 ? 1 : 0;
      expect(frames).toBe(17);
      counts.push(Tensor.liveCount());
      expect(pendingNativeTasks()).toBe(0);
      rss.push(process.memoryUsage().rss);
    }
    expect(counts.every((c) => c === baseline), `live tensors after each run: ${counts.join(',')}`).toBe(true);
    // max over a block of 10 runs: RSS moves by a few MiB between runs as the allocator reuses pages
    const peak = (from: number) => Math.max(...rss.slice(from, from + 10));
    const afterWarmup = peak(WARMUP - 10);
    const end = peak(RUNS - 10);
    const growth = end / afterWarmup;
    console.log(`resources: RSS after warm-up ${(afterWarmup / 2 ** 20).toFixed(0)} MiB, after ${RUNS} runs ${(end / 2 ** 20).toFixed(0)} MiB, growth x${growth.toFixed(3)}`);
    expect(growth).toBeLessThanOrEqual(1.05);
  });
});
