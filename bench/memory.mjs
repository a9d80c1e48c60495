#!/usr/bin/env node
// Peak memory vs video length (issue 5 item 7): runs the pipeline on the embedded tiny model for
// 48 and 240 frames, each in a fresh child process, and prints peak RSS (VmHWM) and the peak of the run's
// CPU tensors above the loaded weights (the addon's allocator count, exact) side by side with
// the ratio. On a CUDA device it also reports the CUDA allocator's peak. Steps are reduced (the
// memory profile of a step does not depend on the step count); frames stream to a null sink.
//
//   npm run build && node bench/memory.mjs [--frames 48,240] [--enhance] [--device cpu]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const get = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
};

if (argv[0] === '--child') {
  const [, frames, enhance, device] = argv;
  const lib = await import('../dist/lib/index.js');
  const pipe = await lib.StreamingT2VPipeline.load({ device, verifyChecksums: false, loadEnhancer: enhance === '1' });
  const cuda = pipe.device.startsWith('cuda');
  if (cuda) await lib.resetPeakMemory(pipe.device);
  const cpuBase = lib.cpuMemoryStats().allocated; // weights loaded; the run's own tensors come on top
  lib.resetCpuPeakMemory();
  let count = 0;
  const t0 = performance.now();
  for await (const f of pipe.generate({ prompt: 'a red circle bouncing to the right on a blue background', numFrames: Number(frames), stage1: { steps: 3 }, stage2: { steps: 3 }, enhance: enhance === '1' ? { steps: 3 } : false })) {
    count += f.data.length > 0 ? 1 : 0;
  }
  const seconds = (performance.now() - t0) / 1000;
  const stats = cuda ? await lib.cudaMemoryStats(pipe.device) : undefined;
  const status = (await import('node:fs')).readFileSync('/proc/self/status', 'utf8');
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)[1]) * 1024;
  const cpuPeak = lib.cpuMemoryStats().peakAllocated - cpuBase;
  pipe.dispose();
  process.stdout.write(JSON.stringify({ frames: Number(frames), yielded: count, seconds, peakRss: hwm, cpuPeak, cudaPeak: stats?.peakAllocated }) + '\n');
  process.exit(0);
}

const lengths = get('frames', '48,240').split(',').map(Number);
const enhance = argv.includes('--enhance') ? '1' : '0';
const device = get('device', 'cpu');
const rows = [];
for (const n of lengths) {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', String(n), enhance, device], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  rows.push(JSON.parse(r.stdout.trim().split('\n').pop()));
}
const base = rows[0];
console.log(`device ${device}, enhancement ${enhance === '1' ? 'on' : 'off'}, tiny model, 3 steps per stage\n`);
console.table(
  rows.map((r) => ({
    frames: r.frames,
    'frames yielded': r.yielded,
    seconds: r.seconds.toFixed(1),
    'peak RSS MiB': (r.peakRss / 2 ** 20).toFixed(1),
    'RSS vs first': (r.peakRss / base.peakRss).toFixed(3),
    'CPU tensor peak MiB': (r.cpuPeak / 2 ** 20).toFixed(2),
    'tensors vs first': (r.cpuPeak / base.cpuPeak).toFixed(3),
    ...(r.cudaPeak === undefined ? {} : { 'CUDA peak MiB': (r.cudaPeak / 2 ** 20).toFixed(1), 'CUDA vs first': (r.cudaPeak / base.cudaPeak).toFixed(3) }),
  })),
);
