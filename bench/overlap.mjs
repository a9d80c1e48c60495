#!/usr/bin/env node
// Overlap benchmark (issue 7, item 4): end-to-end generateLongVideo time writing MP4s with
// readAhead 0 (generation pauses while each frame is written) against readAhead N (frames are
// written while the networks make the next ones). Also times the same run writing nothing, so the
// share of the time that writing costs is visible. Rounds alternate the variants; medians are printed.
//
//   npm run build && node bench/overlap.mjs --frames 64 --steps 2/2/2 --rounds 5 --ahead 0,8,16
//
// Options: --frames N (64) --steps S1/S2/S3 (2/2/2) --rounds N (5) --ahead LIST (0,8,16)
//          --threads N (1) --device cpu|cuda|auto (cpu) --model DIR (models/tiny) --png (also PNG sequences)
//          --sink-ms N (0: an onFrame that waits N ms per frame, as an upload to a slow network would;
//          it takes no CPU, unlike x264 and PNG encoding, which compete with the networks for the cores)
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';

import { StreamingT2VPipeline, generateLongVideo, getNumThreads, torchInfo } from '../dist/lib/index.js';

const argv = process.argv.slice(2);
const get = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
};
const frames = Number(get('frames', 64));
const [s1, s2, s3] = String(get('steps', '2/2/2')).split('/').map(Number);
const rounds = Number(get('rounds', 5));
const aheads = String(get('ahead', '0,8,16')).split(',').map(Number);
const threads = Number(get('threads', 1));
const png = argv.includes('--png');
const modelDir = get('model', 'models/tiny');
const sinkMs = Number(get('sink-ms', 0));
const onFrame = sinkMs > 0 ? () => new Promise((r) => setTimeout(r, sinkMs)) : undefined;

const pipe = await StreamingT2VPipeline.load({ modelDir, device: get('device', 'cpu'), threads, verifyChecksums: false });
const run = { prompt: 'a red circle bouncing to the right on a blue background', numFrames: frames, seed: 1, stage1: { steps: s1 }, stage2: { steps: s2 }, enhance: { steps: s3 } };
const d = pipe.defaults;
const info = torchInfo();
console.log(
  `workload: ${frames} frames, steps ${s1}/${s2}/${s3}, model ${modelDir} (preview ${d.stage1.width}x${d.stage1.height}, final ${d.stage3.size}x${d.stage3.size} ` +
    `padded to ${d.stage3.padWidth} wide), device ${pipe.device}, libtorch ${info.torch ?? info.version ?? '?'}, threads ${getNumThreads()}, ` +
    `${cpus().length} CPUs; outputs: final + preview MP4 (libx264 'medium', crf 18)${png ? ' + PNG sequences' : ''}${sinkMs > 0 ? ` + onFrame waiting ${sinkMs} ms per frame` : ''}; ${rounds} rounds`,
);

const root = mkdtempSync(join(tmpdir(), 'st2v-overlap-'));
const variants = [{ name: 'no output (generation only)', options: {} }, ...aheads.map((n) => ({ name: `readAhead ${n}`, ahead: n, options: { readAhead: n } }))];
const times = new Map(variants.map((v) => [v.name, []]));

async function once(variant, r) {
  const dir = join(root, `${r}-${variant.ahead ?? 'none'}`);
  const outputs = variant.ahead === undefined ? {} : { output: join(dir, 'v.mp4'), ...(png ? { pngDir: join(dir, 'png') } : {}), ...(onFrame ? { onFrame } : {}) };
  const t0 = performance.now();
  const result = await generateLongVideo({ pipeline: pipe, ...run, ...outputs, ...variant.options });
  const seconds = (performance.now() - t0) / 1000;
  if (result.frames.preview !== frames || result.frames.final !== frames) throw new Error(`expected ${frames} frames, got ${JSON.stringify(result.frames)}`);
  rmSync(dir, { recursive: true, force: true });
  return seconds;
}

await once(variants[1] ?? variants[0], 'warmup');
for (let r = 0; r < rounds; r++) {
  // alternate the order every round so that drift in the machine's load hits every variant alike
  const order = r % 2 === 0 ? variants : [...variants].reverse();
  const line = [];
  for (const v of order) {
    const s = await once(v, r);
    times.get(v.name).push(s);
    line.push(`${v.name.split(' (')[0]} ${s.toFixed(2)} s`);
  }
  console.log(`round ${r + 1}: ${line.join(', ')}`);
}
pipe.dispose();
rmSync(root, { recursive: true, force: true });

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const gen = median(times.get(variants[0].name));
const base = median(times.get(`readAhead ${aheads[0]}`));
console.log('');
console.log(`| | median of ${rounds} | min–max | vs readAhead ${aheads[0]} | writing overhead over generation only |`);
console.log('|---|---|---|---|---|');
for (const v of variants) {
  const xs = times.get(v.name);
  const m = median(xs);
  const ratio = v.ahead === undefined ? '' : (m / base).toFixed(3);
  const overhead = v.ahead === undefined ? '' : `${(m - gen).toFixed(2)} s (${(((m - gen) / gen) * 100).toFixed(1)} %)`;
  console.log(`| ${v.name} | ${m.toFixed(2)} s | ${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)} s | ${ratio} | ${overhead} |`);
}
