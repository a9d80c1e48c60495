#!/usr/bin/env node
// Soak test (issue 8): many generations in one process on one pipeline (embedded tiny model, CPU by
// default). Prints RSS and the live native tensor count every N runs, then the RSS growth ratio
// from the end of warm-up to the end. Compare allocators by running it twice:
//
//   npm run build && node bench/soak.mjs --runs 500 --every 50
//   LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 node bench/soak.mjs --runs 500 --every 50
//
// Options: --runs N (500) --every N (50) --warmup N (50) --frames N (17) --steps N (1)
//          --enhance (off by default) --threads N (1) --device cpu|cuda|auto (cpu)
// Exit code 1 when live tensors are not back to the baseline after a run or RSS grows more than
// --max-growth (default 1.05) after warm-up.
import { StreamingT2VPipeline, Tensor, pendingNativeTasks } from '../dist/lib/index.js';

const argv = process.argv.slice(2);
const get = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
};
const runs = Number(get('runs', 500));
const every = Number(get('every', 50));
const warmup = Number(get('warmup', 50));
const frames = Number(get('frames', 17));
const steps = Number(get('steps', 1));
const maxGrowth = Number(get('max-growth', 1.05));
const enhance = argv.includes('--enhance') ? { steps } : false;

const pipe = await StreamingT2VPipeline.load({ device: get('device', 'cpu'), threads: Number(get('threads', 1)), verifyChecksums: false, loadEnhancer: enhance !== false });
const mib = (b) => (b / 2 ** 20).toFixed(1);
const allocator = (process.env.LD_PRELOAD ?? '').includes('jemalloc') ? 'jemalloc' : 'glibc malloc';
console.log(`soak: ${runs} runs x ${frames} frames, ${steps}-step stages, enhance ${enhance !== false}, ${pipe.device}, ${allocator}`);
const baseline = Tensor.liveCount();
let leaks = 0;
let atWarmup;
let blockPeak = 0;
const t0 = performance.now();
for (let i = 1; i <= runs; i++) {
  for await (const f of pipe.generate({ prompt: 'a red circle bouncing to the right', numFrames: frames, seed: i, stage1: { steps }, stage2: { steps }, enhance })) {
    if (f.data.length === 0) throw new Error('empty frame');
  }
  if (Tensor.liveCount() !== baseline || pendingNativeTasks() !== 0) leaks++;
  blockPeak = Math.max(blockPeak, process.memoryUsage().rss);
  if (i % every === 0) {
    if (i === warmup || (atWarmup === undefined && i > warmup)) atWarmup = blockPeak;
    const s = ((performance.now() - t0) / 1000).toFixed(1);
    console.log(`run ${String(i).padStart(5)}  rss(max of last ${every}) ${mib(blockPeak)} MiB  live tensors ${Tensor.liveCount()}  ${s} s`);
    if (i !== runs) blockPeak = 0;
  }
}
pipe.dispose();
const growth = atWarmup === undefined ? NaN : blockPeak / atWarmup;
console.log(`growth after warm-up (${warmup} runs): x${growth.toFixed(3)}; runs that left tensors behind: ${leaks}`);
process.exitCode = leaks > 0 || !(growth <= maxGrowth) ? 1 : 0;
