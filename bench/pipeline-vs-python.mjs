#!/usr/bin/env node
// Benchmark P1 (issue 7): the Node pipeline vs a minimal Python driver (bench/py/pipeline_driver.py) running the SAME
// exported TorchScript files with the same algorithm and seeds, on the same device (CPU), same work.
//
//   npm run build && node bench/pipeline-vs-python.mjs [--frames 32] [--steps 10/10/6] [--threads 1] [--rounds 3]
//                                                      [--seed 33] [--model DIR] [--no-enhance] [--no-freeze]
//
// Both sides load their models once (not timed); each timed run is one whole generation (tokenization, stage 1,
// stage-2 windows, stage 3, uint8 frames). Rounds alternate the order (N,P then P,N ...) so a drifting background
// load hits both sides alike; the table reports medians. The frames of the first round of each side are compared
// byte for byte (max |diff|, fraction of differing bytes) against the tolerance of test/pipeline/python-parity.test.ts.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const frames = Number(opt('frames', 32));
const [steps1, steps2, steps3] = opt('steps', '10/10/6').split('/').map(Number);
const threads = Number(opt('threads', 1));
const rounds = Number(opt('rounds', 3));
const seed = Number(opt('seed', 33));
const modelDir = resolve(opt('model', join(root, 'models', 'tiny')));
const enhance = !args.includes('--no-enhance');
const prompt = 'a red circle bouncing to the right on a blue background';
// Tolerance (same as the parity test): uint8 frames may differ by float summation order only.
const TOL = { maxAbs: 2, maxDifferingFraction: 0.005 };

const dist = join(root, 'dist', 'lib', 'index.js');
if (!existsSync(dist)) {
  console.error('dist/lib/index.js is missing: run `npm run build` first');
  process.exit(2);
}
if (spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status !== 0) {
  console.error('/usr/bin/python3 cannot import torch; the Python side cannot run');
  process.exit(2);
}
const { StreamingT2VPipeline, getNumThreads } = await import(dist);

// ---- Python driver in server mode (loads once, one JSON line per run) ----
const py = spawn(
  '/usr/bin/python3',
  [join(root, 'bench', 'py', 'pipeline_driver.py'), '--serve', '--model-dir', modelDir, '--prompt', prompt, '--frames', String(frames),
    '--seed', String(seed), '--steps1', String(steps1), '--steps2', String(steps2), '--steps3', String(steps3), '--threads', String(threads),
    ...(enhance ? [] : ['--no-enhance'])],
  { stdio: ['pipe', 'pipe', 'inherit'] },
);
const lines = createInterface({ input: py.stdout })[Symbol.asyncIterator]();
const nextLine = async () => {
  const { value, done } = await lines.next();
  if (done) throw new Error('the Python driver exited');
  const msg = JSON.parse(value);
  if (msg.error) throw new Error(`Python driver: ${msg.error}`);
  return msg;
};
const pyReady = await nextLine();
const pyRun = async (req) => {
  py.stdin.write(`${JSON.stringify(req)}\n`);
  return nextLine();
};

// ---- Node pipeline ----
// `--no-freeze` loads the networks as they are; by default the Node side freezes them at load (the pipeline's
// `freeze` option; loading is not timed), the Python driver does not.
const freeze = !args.includes('--no-freeze');
const pipe = await StreamingT2VPipeline.load({ modelDir, device: 'cpu', threads, loadEnhancer: enhance, freeze });
async function nodeRun(o) {
  const preview = [];
  const final = [];
  const t0 = performance.now();
  const marks = [];
  for await (const f of pipe.generate({
    prompt, numFrames: o.frames, seed, stage1: { steps: o.steps1 }, stage2: { steps: o.steps2 }, enhance: enhance ? { steps: o.steps3 } : false,
  })) {
    // stage boundaries as the Python driver marks them: the first preview frame (stage 1 done), the last (stage 2 done)
    if (f.stage === 'preview' && (f.index === 0 || f.index === o.frames - 1)) marks.push((performance.now() - t0) / 1000);
    (f.stage === 'preview' ? preview : final).push(Buffer.from(f.data));
  }
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, marks, preview: Buffer.concat(preview), final: Buffer.concat(final) };
}

const work = { frames, steps1, steps2, steps3 };
const tmp = mkdtempSync(join(tmpdir(), 'st2v-pvp-'));
try {
  // Warm-up (untimed): a tiny run on each side touches every module once.
  const warm = { frames: 20, steps1: 1, steps2: 1, steps3: 1 };
  await nodeRun(warm);
  await pyRun({ ...warm, out: null });

  const nodeS = [];
  const pyS = [];
  let nodeFirst;
  let pyFirst;
  const nodeStages = [];
  const pyStages = [];
  /** [stage 1, stage 2, stage 3] seconds from the two stage marks and the total. */
  const stageTimes = (m, total) => [m[0], m[1] - m[0], total - m[1]];
  const nodeSame = [];
  const pySame = [];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? ['node', 'py'] : ['py', 'node'];
    for (const side of order) {
      if (side === 'node') {
        const res = await nodeRun(work);
        nodeS.push(res.seconds);
        nodeStages.push(stageTimes(res.marks, res.seconds));
        if (nodeFirst === undefined) nodeFirst = res;
        else nodeSame.push(res.preview.equals(nodeFirst.preview) && res.final.equals(nodeFirst.final));
      } else {
        const out = join(tmp, `py${r}`);
        const res = await pyRun({ ...work, out });
        pyS.push(res.seconds);
        pyStages.push(stageTimes(res.stage_marks, res.seconds));
        const got = { preview: readFileSync(join(out, 'preview.rgb')), final: enhance ? readFileSync(join(out, 'final.rgb')) : Buffer.alloc(0) };
        if (pyFirst === undefined) pyFirst = got;
        else pySame.push(got.preview.equals(pyFirst.preview) && got.final.equals(pyFirst.final));
      }
      process.stderr.write(`round ${r + 1}/${rounds} ${side}: ${(side === 'node' ? nodeS : pyS).at(-1).toFixed(2)} s\n`);
    }
  }

  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  };
  const diff = (a, b) => {
    if (a.length !== b.length) return { bytes: `${a.length} vs ${b.length}`, maxAbs: Infinity, fraction: 1 };
    let maxAbs = 0;
    let n = 0;
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i] - b[i]);
      if (d > 0) n++;
      if (d > maxAbs) maxAbs = d;
    }
    return { bytes: a.length, maxAbs, fraction: n / a.length };
  };
  const mn = median(nodeS);
  const mp = median(pyS);
  const torchVersion = spawnSync('/usr/bin/python3', ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' }).stdout.trim();
  console.log(`\nworkload: ${frames} frames, steps ${steps1}/${steps2}/${steps3}, seed ${seed}, ${enhance ? 'stage 3 on' : 'stage 3 off'}, ` +
    `CPU, threads ${threads} (Node ${getNumThreads()}, Python ${pyReady.threads}), ${rounds} alternating rounds after one untimed warm-up; ` +
    `generation only (model loading excluded); Node networks ${freeze ? 'frozen at load (freeze: true)' : 'not frozen'}; Python torch ${torchVersion}\n`);
  console.log('| side | runs (s) | median (s) |');
  console.log('|---|---|---|');
  console.log(`| Node pipeline (addon, libtorch) | ${nodeS.map((s) => s.toFixed(2)).join(', ')} | ${mn.toFixed(2)} |`);
  console.log(`| Python driver (torch.jit) | ${pyS.map((s) => s.toFixed(2)).join(', ')} | ${mp.toFixed(2)} |`);
  console.log(`| **ratio node/python** (of the medians) | | **${(mn / mp).toFixed(3)}** |`);
  console.log(`| ratio node/python, median of the per-round ratios | ${nodeS.map((s, i) => (s / pyS[i]).toFixed(3)).join(', ')} | ${median(nodeS.map((s, i) => s / pyS[i])).toFixed(3)} |`);
  console.log('\n| stage (median s) | Node | Python | node/python |');
  console.log('|---|---|---|---|');
  ['stage 1 (+ APM, first frames)', 'stage 2 windows', 'stage 3'].forEach((name, k) => {
    const n = median(nodeStages.map((x) => x[k]));
    const p = median(pyStages.map((x) => x[k]));
    console.log(`| ${name} | ${n.toFixed(2)} | ${p.toFixed(2)} | ${(n / p).toFixed(3)} |`);
  });
  console.log('\n| frames | bytes | max abs diff | differing bytes | tolerance | within |');
  console.log('|---|---|---|---|---|---|');
  let ok = true;
  for (const name of enhance ? ['preview', 'final'] : ['preview']) {
    const d = diff(nodeFirst[name], pyFirst[name]);
    const within = d.maxAbs <= TOL.maxAbs && d.fraction <= TOL.maxDifferingFraction;
    ok &&= within;
    console.log(`| ${name} | ${d.bytes} | ${d.maxAbs} | ${(d.fraction * 100).toFixed(4)} % | ≤ ${TOL.maxAbs}, ≤ ${TOL.maxDifferingFraction * 100} % | ${within ? 'yes' : 'NO'} |`);
  }
  console.log(`\nrepeat runs identical: Node ${nodeSame.every(Boolean) ? 'yes' : 'NO'}, Python ${pySame.every(Boolean) ? 'yes' : 'NO'}`);
  if (!ok) process.exitCode = 1;
} finally {
  py.stdin.end(`${JSON.stringify({ quit: true })}\n`);
  pipe.dispose();
  rmSync(tmp, { recursive: true, force: true });
}
