#!/usr/bin/env node
// Quality benchmark, step 1 (issue 6): generate long videos from world prompts with the library's streaming API
// and store the frames as raw RGB24 (<out>/<tag>/<i>.rgb, frame after frame) plus <i>.json (prompt, size, seconds).
// Step 2 is metrics.py. See bench/quality/README.md.
//
//   npm run build && node bench/quality/generate.mjs --out /tmp/q --tag full [--model models/default]
//       [--prompts bench/quality/prompts.txt] [--limit 4] [--frames 240] [--steps1 N] [--steps2 N] [--g1 W] [--g2 W]
//       [--seed 33] [--threads 1] [--enhance] [--overlap 8] [--from 0] [--replace-overlap S] [--cut-retries N]
//       [--only 1,4,18]  (prompts from..limit-1, or the listed ones)
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { streamLongVideo } from '../../dist/lib/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const arg = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
};
const flag = (name) => argv.includes(`--${name}`);
const out = arg('out', '/tmp/st2v-quality');
const tag = arg('tag', 'full');
const model = arg('model', join(here, '..', '..', 'models', 'default'));
const prompts = readFileSync(arg('prompts', join(here, 'prompts.txt')), 'utf8')
  .split('\n').map((s) => s.trim()).filter((s) => s && !s.startsWith('#'));
const limit = Number(arg('limit', prompts.length));
const frames = Number(arg('frames', 240));
const dir = join(out, tag);
mkdirSync(dir, { recursive: true });

const only = arg('only') === undefined ? undefined : arg('only').split(',').map(Number);
for (let i = Number(arg('from', 0)); i < Math.min(limit, prompts.length); i++) {
  if (only !== undefined && !only.includes(i)) continue;
  const prompt = prompts[i];
  const t0 = Date.now();
  const files = {};
  const counts = { preview: 0, final: 0 };
  const sizes = {};
  const retries = [];
  const enhance = flag('enhance') ? { overlapFrames: Number(arg('overlap', 8)), ...(arg('steps3') ? { steps: Number(arg('steps3')) } : {}) } : false;
  for await (const f of streamLongVideo({
    prompt, numFrames: frames, modelDir: model, seed: Number(arg('seed', 33)), threads: Number(arg('threads', 1)),
    device: 'cpu', enhance,
    // steps and guidance: the model's manifest defaults unless given
    stage1: { ...(arg('steps1') ? { steps: Number(arg('steps1')) } : {}), ...(arg('g1') ? { guidance: Number(arg('g1')) } : {}) },
    stage2: {
      ...(arg('steps2') ? { steps: Number(arg('steps2')) } : {}),
      ...(arg('g2') ? { guidance: Number(arg('g2')) } : {}),
      ...(arg('replace-overlap') ? { replaceOverlap: Number(arg('replace-overlap')) } : {}),
      ...(arg('cut-retries') ? { cutRetries: Number(arg('cut-retries')) } : {}),
    },
    // the cut guard's retries: [window retried, attempt, seam content, seam ratio] of each (a handover retry starts
    // with stage 1's steps: window 1)
    onProgress: (p) => {
      if (p.seam !== undefined) retries.push([p.phase === 'stage1' ? 1 : p.window, p.attempt, +p.seam.content.toFixed(2), +p.seam.ratio.toFixed(2)]);
    },
  })) {
    const name = f.stage === 'preview' ? `${i}.rgb` : `${i}.final.rgb`;
    files[f.stage] ??= openSync(join(dir, name), 'w');
    writeSync(files[f.stage], f.data);
    counts[f.stage]++;
    sizes[f.stage] = [f.height, f.width];
  }
  for (const fd of Object.values(files)) closeSync(fd);
  const seconds = (Date.now() - t0) / 1000;
  writeFileSync(join(dir, `${i}.json`), JSON.stringify({ prompt, tag, model, frames: counts, sizes, seconds, enhance, retries }, null, 1));
  console.log(`${tag} #${i} ${seconds.toFixed(1)} s${retries.length ? ` (${retries.length} cut-guard retries)` : ''}: ${prompt}`);
}
