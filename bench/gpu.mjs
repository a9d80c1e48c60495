#!/usr/bin/env node
// GPU benchmark (issue 7, P2/P3/P4): full-size networks (random weights: `python3 -m models.export --config full
// --random-weights --dtype fp16 --device cuda --out DIR`) on CUDA.
//
//   node bench/gpu.mjs --model DIR [--dtype manifest|float16|bfloat16|float32] [--no-tf32] [--frames 80,240] [--budgets none,24]
//                      [--steps 50/50/30] [--official-steps 50/50/30] [--flops FILE] [--peak-tflops X] [--out FILE]
//                      [--deadline-s S] (start no case that would end later; the JSON is rewritten after every case)
//   node bench/gpu.mjs --device cpu --config tiny --frames 24 --steps 2/2/1       (smoke test without a GPU)
//
// Per (vramBudget, frames) case, one generation (stage 3 on, `layout: 'pad'`, so 1280x720 at full size):
//   * stage-2 seconds per NEW frame (256x256 at full size) and stage-3 seconds per frame, as measured with --steps
//     and extrapolated to --official-steps: every progress event (one per sampler step, VAE batch and window) queues
//     `synchronize(device)` on the device's FIFO worker, so event times are GPU completion times; per-step time =
//     median gap between consecutive step events; a window's (or stage 3's) remainder = its wall time minus its
//     steps; extrapolated = remainder + official steps x per-step time. (The syncs cost a little overlap of CPU
//     launch and GPU work; `--no-sync` turns them off, then per-step times are launch-bound and unreliable.)
//   * peak device memory (CUDA caching allocator: peak allocated / reserved after `resetPeakMemory`; on CPU the
//     addon's CPU tensor counter), with and without `vramBudget` (`--budgets none,24` = no budget and 24 GiB);
//     the plan's own estimate is printed beside it.
//   * achieved TFLOP/s = FLOPs per UNet call (bench/py/unet_flops.py, FlopCounterMode, torch >= 2.1) / per-step
//     time, and its fraction of the device's dense peak for the stage's dtype (H100/H200 SXM: 989 TFLOP/s fp16/bf16,
//     495 TF32, 67 fp32; override with --peak-tflops). Default dtypes: the manifest's (stage 1 and the enhancer UNet
//     fp16, stage 2 fp32 with TF32), as the pipeline runs on CUDA.
// Prints one table and writes JSON (--out, default bench/out/gpu.json). On CPU with the tiny model the numbers only
// prove that the benchmark runs; they say nothing about GPU performance.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const KNOWN = ['model', 'config', 'device', 'dtype', 'frames', 'budgets', 'steps', 'official-steps', 'flops', 'peak-tflops', 'out', 'threads', 'seed', 'no-sync', 'python', 'verify-checksums', 'deadline-s', 'no-tf32'];
for (const a of args) {
  if (a.startsWith('--') && !KNOWN.includes(a.slice(2))) {
    console.error(`gpu.mjs: unknown flag ${a} (known: ${KNOWN.map((k) => `--${k}`).join(' ')})`);
    process.exit(2);
  }
}
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const flag = (name) => args.includes(`--${name}`);
const config = opt('config', 'full');
const device = opt('device', 'cuda');
// 'manifest': the pipeline's default (on CUDA the manifest's official compute dtypes per stage), else one dtype for all
const dtype = opt('dtype', 'manifest');
const tf32 = !flag('no-tf32');
const modelDir = resolve(opt('model', join(root, 'models', config === 'tiny' ? 'tiny' : 'full-random')));
const frameList = opt('frames', '80,240').split(',').map(Number);
const budgets = opt('budgets', 'none,24').split(',').map((b) => (b === 'none' ? undefined : Math.round(Number(b) * 2 ** 30)));
const parseSteps = (s) => {
  const [s1, s2, s3] = s.split('/').map(Number);
  return { s1, s2, s3 };
};
const steps = parseSteps(opt('steps', '50/50/30'));
const official = parseSteps(opt('official-steps', '50/50/30'));
const out = resolve(opt('out', join(root, 'bench', 'out', 'gpu.json')));
const seed = Number(opt('seed', 33));
const python = opt('python', process.env.TORCH_PYTHON ?? 'python3');
const cuda = device.startsWith('cuda');
const sync = cuda && !flag('no-sync');
// Stop starting cases that would not finish before this many seconds from now (a device call has 10 minutes).
const deadline = opt('deadline-s') ? performance.now() + Number(opt('deadline-s')) * 1000 : Infinity;
for (const [k, v] of Object.entries({ ...steps, frames: frameList })) {
  if ([v].flat().some((x) => !Number.isInteger(x) || x < 1)) {
    console.error(`gpu.mjs: bad ${k}: ${v}`);
    process.exit(2);
  }
}
if (budgets.some((b) => b !== undefined && !(b > 0))) {
  console.error('gpu.mjs: --budgets takes GiB numbers or none, e.g. none,24');
  process.exit(2);
}

const dist = join(root, 'dist', 'lib', 'index.js');
if (!existsSync(dist)) {
  console.error('gpu.mjs: dist/lib/index.js is missing: run `npm run build` (or unpack .gpu/dist.tar.xz)');
  process.exit(2);
}
if (!existsSync(join(modelDir, 'manifest.json'))) {
  console.error(`gpu.mjs: no model directory at ${modelDir}. Make one with\n  python3 -m models.export --config ${config} ${config === 'tiny' ? '' : '--random-weights --dtype fp16 --device cuda '}--out ${modelDir}`);
  process.exit(2);
}
const lib = await import(dist);
const { StreamingT2VPipeline, cudaAvailable, torchInfo } = lib;
if (cuda && !cudaAvailable()) {
  console.error(`gpu.mjs: --device ${device} but this addon has no usable CUDA (torchInfo: ${JSON.stringify(torchInfo())})`);
  process.exit(2);
}
const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8'));
const defaults3 = manifest.defaults?.stage3 ?? manifest.defaults?.enhance ?? {};
const chunkFrames = Number(defaults3.chunk_frames ?? defaults3.chunkFrames ?? 24);
const overlapFrames = Number(defaults3.overlap_frames ?? defaults3.overlapFrames ?? 8);

// ---- FLOPs per network call ----
function loadFlops() {
  const given = opt('flops');
  if (given) return JSON.parse(readFileSync(given, 'utf8'));
  const cfg = manifest.created_by?.config ?? config;
  const r = spawnSync(python, [join(root, 'bench', 'py', 'unet_flops.py'), '--config', cfg, '--frames3', String(chunkFrames), '--only', 'unet_stage1,unet_stage2,enhancer_unet'], { encoding: 'utf8', cwd: root });
  if (r.status !== 0) {
    const why = r.status === 3 ? 'needs torch >= 2.1' : `exit ${r.status ?? r.error?.message}`;
    console.error(`gpu.mjs: FLOPs not counted (${python} bench/py/unet_flops.py: ${why}); TFLOP/s columns stay empty`);
    if (r.stderr) console.error(r.stderr.trim().split('\n').slice(-3).join('\n'));
    return undefined;
  }
  return JSON.parse(r.stdout);
}
const flops = loadFlops();
const deviceName = flops?.device?.name ?? (cuda ? 'unknown CUDA device' : 'cpu');
// The dtype each UNet runs in: --dtype, else the manifest's precision (what the pipeline does on CUDA), float32 on CPU.
const precision = manifest.defaults?.precision ?? {};
const stageDtype = (key) => (dtype !== 'manifest' ? dtype : cuda ? (precision[key] ?? 'float32') : 'float32');
const dtypes = { stage1: stageDtype('stage1'), stage2: stageDtype('stage2'), stage3: stageDtype('stage3_unet') };
// Dense peaks (no sparsity) of the H100/H200 SXM (H100 PCIe in brackets): fp16/bf16 989.4 (756), TF32 494.7 (378),
// fp32 66.9 (51.2) TFLOP/s. --peak-tflops X uses X for every stage.
function peakTflops(d) {
  if (opt('peak-tflops')) return Number(opt('peak-tflops'));
  if (!/H100|H200|H800|GH200/.test(deviceName)) return undefined;
  const pcie = /PCIe/i.test(deviceName);
  if (d !== 'float32') return pcie ? 756 : 989.4;
  if (tf32) return pcie ? 378 : 494.7;
  return pcie ? 51.2 : 66.9;
}
const peaks = { stage1: peakTflops(dtypes.stage1), stage2: peakTflops(dtypes.stage2), stage3: peakTflops(dtypes.stage3) };

// ---- one generation with timestamps ----
const median = (xs) => {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
async function memoryNow() {
  if (cuda) return lib.cudaMemoryStats(device);
  const s = lib.cpuMemoryStats();
  return { allocated: s.allocated, peakAllocated: s.peakAllocated, reserved: undefined, peakReserved: undefined };
}
async function resetPeak() {
  if (cuda) {
    await lib.synchronize(device);
    await lib.emptyCache(device);
    await lib.resetPeakMemory(device);
  } else lib.resetCpuPeakMemory();
}

async function runCase(pipe, numFrames) {
  await resetPeak();
  const before = await memoryNow();
  const events = [];
  const t0 = performance.now();
  const onProgress = (e) => {
    const rec = { phase: e.phase, window: e.window, step: e.step, t: performance.now() - t0 };
    events.push(rec);
    if (sync) rec.synced = lib.synchronize(device).then(() => { rec.t = performance.now() - t0; });
  };
  let preview = 0;
  let final = 0;
  let lastPreviewT = 0;
  for await (const f of pipe.generate({ prompt: 'a red circle bouncing to the right on a blue background', numFrames, seed, stage1: { steps: steps.s1 }, stage2: { steps: steps.s2 }, enhance: { steps: steps.s3, layout: 'pad' }, onProgress })) {
    if (f.stage === 'preview') {
      preview++;
      lastPreviewT = performance.now() - t0;
    } else final++;
  }
  if (cuda) await lib.synchronize(device);
  const total = (performance.now() - t0) / 1000;
  await Promise.all(events.map((e) => e.synced));
  const mem = await memoryNow();
  return analyse(events, { numFrames, preview, final, total, lastPreviewT, before, mem });
}

function analyse(events, r) {
  const sec = (ms) => ms / 1000;
  const stepGaps = (phase) => {
    const gaps = [];
    for (let i = 1; i < events.length; i++) {
      const a = events[i - 1];
      const b = events[i];
      if (a.phase === phase && b.phase === phase && a.window === b.window && b.step === a.step + 1) gaps.push(b.t - a.t);
    }
    return median(gaps);
  };
  const windowsDone = events.filter((e) => (e.phase === 'stage1' || e.phase === 'stage2') && e.step === undefined);
  const stage1End = windowsDone.find((e) => e.window === 0)?.t;
  const stage2End = windowsDone.at(-1)?.t ?? stage1End;
  const end = events.at(-1)?.t ?? r.total * 1000;
  const per1 = stepGaps('stage1');
  const per2 = stepGaps('stage2');
  const per3 = stepGaps('stage3');
  const windows = windowsDone.filter((e) => e.window > 0).length;
  const newFrames = Math.max(0, Math.min(r.numFrames, r.preview) - 16);
  const stage2Wall = stage2End - stage1End;
  const stage3Wall = end - stage2End;
  // remainder = what does not scale with the step count (decode, CAM/APM encoders, stage-3 VAE, scheduler setup)
  const rest2 = per2 === undefined ? undefined : stage2Wall - windows * steps.s2 * per2;
  const rest3 = per3 === undefined ? undefined : stage3Wall - steps.s3 * per3;
  const chunks = Math.max(1, Math.ceil((r.numFrames - overlapFrames) / (chunkFrames - overlapFrames)));
  const chunkLen = Math.min(chunkFrames, r.numFrames);
  const f = flops?.flops_per_call;
  const tflops = (flopsPerStep, perStepMs) => (flopsPerStep && perStepMs ? flopsPerStep / (perStepMs / 1000) / 1e12 : undefined);
  const s2Official = rest2 === undefined || newFrames === 0 ? undefined : sec(rest2 + windows * official.s2 * per2) / newFrames;
  const s3Official = rest3 === undefined ? undefined : sec(rest3 + official.s3 * per3) / r.numFrames;
  return {
    frames: r.numFrames,
    previewFrames: r.preview,
    finalFrames: r.final,
    wallSeconds: r.total,
    stage1Seconds: sec(stage1End),
    stage2: { windows, newFrames, seconds: sec(stage2Wall), secondsPerNewFrame: newFrames ? sec(stage2Wall) / newFrames : undefined, perStepMs: per2, remainderSeconds: rest2 === undefined ? undefined : sec(rest2), secondsPerNewFrameAtOfficialSteps: s2Official, tflops: tflops(f?.unet_stage2, per2) },
    stage3: { chunks, seconds: sec(stage3Wall), secondsPerFrame: sec(stage3Wall) / r.numFrames, perStepMs: per3, remainderSeconds: rest3 === undefined ? undefined : sec(rest3), secondsPerFrameAtOfficialSteps: s3Official, tflops: tflops(f?.enhancer_unet && (f.enhancer_unet * chunks * chunkLen) / chunkFrames, per3) },
    stage1: { perStepMs: per1, tflops: tflops(f?.unet_stage1, per1) },
    memory: { peakAllocated: r.mem.peakAllocated, peakReserved: r.mem.peakReserved, allocatedBefore: r.before.allocated },
  };
}

// ---- main ----
const results = [];
let secondsPerFrame; // of the last finished case, to predict the next one against the deadline
const fits = (seconds) => performance.now() + seconds * 1000 <= deadline;
function save() {
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ createdAt: new Date().toISOString(), device, deviceName, dtype, modelDir, model: manifest.name, modelConfig: manifest.created_by?.config, steps, officialSteps: official, synced: sync, unetDtypes: dtypes, tf32: cuda ? tf32 : null, peakTflops: peaks, flops: flops ?? null, torch: info, results }, null, 1)}\n`);
}
const info = torchInfo();
console.error(`gpu.mjs: ${modelDir} (${manifest.name}, config ${manifest.created_by?.config}), device ${device} (${deviceName}), dtype ${dtype}, steps ${steps.s1}/${steps.s2}/${steps.s3} (extrapolated to ${official.s1}/${official.s2}/${official.s3}), frames ${frameList.join(',')}, budgets ${opt('budgets', 'none,24')}; libtorch ${info.torch} (${info.cudaBuild ? "CUDA build" : "CPU build"})`);
if (!cuda) console.error('gpu.mjs: NOTE: CPU run: the numbers only show that the benchmark works; they say nothing about a GPU.');
for (const budget of budgets) {
  if (!fits(secondsPerFrame === undefined ? 0 : 60 + secondsPerFrame * frameList[0])) {
    results.push({ budget: budget ?? null, skipped: 'deadline' });
    console.error(`gpu.mjs: vramBudget ${budget ?? 'none'} skipped: it would not finish before --deadline-s`);
    continue;
  }
  const tLoad = performance.now();
  let pipe;
  try {
    pipe = await StreamingT2VPipeline.load({ modelDir, device, ...(dtype === 'manifest' ? {} : { dtype }), ...(cuda ? { tf32 } : {}), verifyChecksums: flag('verify-checksums'), ...(budget === undefined ? {} : { vramBudget: budget }), ...(opt('threads') ? { threads: Number(opt('threads')) } : {}) });
  } catch (error) {
    console.error(`gpu.mjs: load with vramBudget ${budget ?? 'none'} failed: ${error.code ?? ''} ${error.message}`);
    results.push({ budget: budget ?? null, error: `${error.code ?? error.name}: ${error.message}` });
    continue;
  }
  const loadSeconds = (performance.now() - tLoad) / 1000;
  const plan = pipe.memoryPlan;
  console.error(`loaded in ${loadSeconds.toFixed(1)} s${plan ? `; memory plan:\n${plan.describe()}` : ''}`);
  const weights = (await memoryNow()).allocated;
  for (const numFrames of frameList) {
    if (secondsPerFrame !== undefined && !fits(secondsPerFrame * numFrames * 1.2)) {
      results.push({ budget: budget ?? null, frames: numFrames, skipped: 'deadline' });
      console.error(`  ${numFrames} frames skipped: about ${(secondsPerFrame * numFrames).toFixed(0)} s would pass --deadline-s`);
      continue;
    }
    try {
      const r = await runCase(pipe, numFrames);
      secondsPerFrame = r.wallSeconds / numFrames;
      results.push({ budget: budget ?? null, loadSeconds, weightBytes: weights, plannedPeakBytes: plan?.peakBytes ?? null, ...r });
      console.error(`  vramBudget ${budget === undefined ? 'none' : `${budget / 2 ** 30} GiB`}, ${numFrames} frames: ${r.wallSeconds.toFixed(1)} s, peak ${(r.memory.peakAllocated / 2 ** 30).toFixed(2)} GiB`);
    } catch (error) {
      console.error(`  ${numFrames} frames failed: ${error.code ?? ''} ${error.message}`);
      results.push({ budget: budget ?? null, frames: numFrames, error: `${error.code ?? error.name}: ${error.message}` });
    }
    save();
  }
  pipe.dispose();
  if (cuda) await lib.emptyCache(device);
}

// ---- table ----
const fmt = (x, d = 2) => (x === undefined || x === null || Number.isNaN(x) ? '-' : x.toFixed(d));
const gib = (b) => (b === undefined || b === null ? '-' : (b / 2 ** 30).toFixed(2));
const pct = (t, stage) => (t === undefined || peaks[stage] === undefined ? '-' : `${((100 * t) / peaks[stage]).toFixed(1)}%`);
const header = ['budget', 'frames', 'wall s', 's2 s/new frame', `s2 @${official.s2} steps`, 's2 ms/step', 's2 TFLOP/s', 's3 s/frame', `s3 @${official.s3} steps`, 's3 ms/step', 's3 TFLOP/s', 'peak alloc GiB', 'peak reserved GiB', 'plan GiB'];
const rows = results.map((r) => (r.error || r.skipped
  ? [r.budget ? `${r.budget / 2 ** 30} GiB` : 'none', String(r.frames ?? '-'), r.error ? `error: ${r.error.slice(0, 60)}` : `skipped (${r.skipped})`]
  : [r.budget ? `${r.budget / 2 ** 30} GiB` : 'none', String(r.frames), fmt(r.wallSeconds, 1), fmt(r.stage2.secondsPerNewFrame, 3), fmt(r.stage2.secondsPerNewFrameAtOfficialSteps, 3), fmt(r.stage2.perStepMs, 1), `${fmt(r.stage2.tflops, 1)} (${pct(r.stage2.tflops, 'stage2')})`, fmt(r.stage3.secondsPerFrame, 3), fmt(r.stage3.secondsPerFrameAtOfficialSteps, 3), fmt(r.stage3.perStepMs, 1), `${fmt(r.stage3.tflops, 1)} (${pct(r.stage3.tflops, 'stage3')})`, gib(r.memory.peakAllocated), gib(r.memory.peakReserved), gib(r.plannedPeakBytes)]));
const table = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
console.log(`\n${device} (${deviceName}), UNet dtypes ${dtypes.stage1}/${dtypes.stage2}/${dtypes.stage3}${cuda ? `, TF32 ${tf32 ? 'on' : 'off'}` : ''}, model ${manifest.name}; measured with ${steps.s1}/${steps.s2}/${steps.s3} steps, "@N steps" extrapolated; dense peaks ${peaks.stage1 ?? '?'}/${peaks.stage2 ?? '?'}/${peaks.stage3 ?? '?'} TFLOP/s${flops ? '' : '; FLOPs not counted'}`);
console.log(table);
const s1 = results.find((r) => r.stage1?.perStepMs !== undefined)?.stage1;
if (s1) console.log(`stage 1: ${fmt(s1.perStepMs, 1)} ms/step, ${fmt(s1.tflops, 1)} TFLOP/s (${pct(s1.tflops, 'stage1')})`);
if (!cuda) console.log('(CPU smoke run: these numbers say nothing about GPU performance.)');

save();
console.error(`wrote ${out}`);
