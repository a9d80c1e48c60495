#!/usr/bin/env node
// Bridge benchmark (issue 2): per-call overhead of an async forward through the addon vs Python on
// the same TorchScript file, and a UNet-sized forward addon vs Python. Python (Debian torch 1.13,
// /usr/bin/python3) and Node run the same file, the same inputs and the same thread count,
// alternating in rounds inside this one run; the table prints medians and ratios.
//
//   npm run build && node bench/bridge.mjs [--rounds 3] [--threads 2]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Tensor, TorchModule, setNumThreads, getNumThreads, torchInfo } from '../dist/lib/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : def;
};
const rounds = opt('rounds', 3);
const threads = opt('threads', 2);
setNumThreads(threads);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function nodeTimes(model, spec, iters, warmup) {
  const m = await TorchModule.load(model);
  const inputs = [];
  for (const item of spec) {
    if (item.kind === 'randn') inputs.push(await Tensor.randn(item.shape, item.seed));
    else if (item.kind === 'full') inputs.push(await Tensor.full(item.shape, item.value));
    else inputs.push(item.value);
  }
  for (let i = 0; i < warmup; i++) (await m.forwardTensor(inputs)).dispose();
  const ms = [];
  for (let i = 0; i < iters; i++) {
    const t0 = process.hrtime.bigint();
    const out = await m.forwardTensor(inputs);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    out.dispose();
  }
  inputs.forEach((t) => t instanceof Tensor && t.dispose());
  m.dispose();
  return ms;
}

function pythonTimes(model, spec, iters, warmup) {
  const dir = mkdtempSync(join(tmpdir(), 'st2v-bench-'));
  const specPath = join(dir, 'spec.json');
  writeFileSync(specPath, JSON.stringify(spec));
  const r = spawnSync('/usr/bin/python3', [join(root, 'bench/py/forward_bench.py'), model, '--inputs', specPath, '--iters', String(iters), '--warmup', String(warmup), '--threads', String(threads)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python bench failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()).ms;
}

const cases = [
  {
    name: 'call overhead (affine, 8 floats)',
    model: join(root, 'test/fixtures/native/affine.pt'),
    spec: [{ kind: 'randn', shape: [8], seed: 1 }, { kind: 'value', value: 1.5 }],
    iters: 2000,
    warmup: 50,
  },
  {
    name: 'UNet-sized forward (mini UNet3D, [2,4,16,32,32])',
    model: join(root, 'test/fixtures/native/mini_unet.pt'),
    spec: [
      { kind: 'randn', shape: [2, 4, 16, 32, 32], seed: 7 },
      { kind: 'full', shape: [2], value: 500 },
      { kind: 'randn', shape: [2, 8, 64], seed: 8 },
    ],
    iters: 10,
    warmup: 3,
  },
];

const info = torchInfo();
console.log(`libtorch ${info.torch} (${info.torchSource}), intra-op threads ${getNumThreads()}, ${rounds} alternating rounds\n`);
const rows = [];
for (const c of cases) {
  const py = [];
  const node = [];
  for (let r = 0; r < rounds; r++) {
    py.push(median(pythonTimes(c.model, c.spec, c.iters, c.warmup)));
    node.push(median(await nodeTimes(c.model, c.spec, c.iters, c.warmup)));
  }
  const p = median(py);
  const n = median(node);
  rows.push({ case: c.name, 'python ms/call': p.toFixed(4), 'node ms/call': n.toFixed(4), 'node - python (ms)': (n - p).toFixed(4), 'node / python': (n / p).toFixed(3) });
}
console.table(rows);
