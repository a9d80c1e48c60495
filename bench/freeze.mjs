#!/usr/bin/env node
// Per-call time of the tiny stage-2 UNet and enhancer UNet loaded plain, frozen (`torch.jit.freeze`) and
// frozen + `optimize_for_inference`, on the CPU with one thread: the measurement behind the pipeline's `freeze`
// default (README "Performance"). Medians of 5 rounds of 5 calls after 3 warm-up calls, in this one run.
//
//   npm run build && node bench/freeze.mjs [--model models/tiny]
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const i = process.argv.indexOf('--model');
const dir = resolve(i >= 0 ? process.argv[i + 1] : join(root, 'models', 'tiny'));
const { TorchModule, Tensor, setNumThreads } = await import(join(root, 'dist', 'lib', 'index.js'));
setNumThreads(1);
const t = await Tensor.full([2], 500);
const inputs = {
  'unet_stage2.pt': [await Tensor.randn([2, 4, 16, 8, 8], 1), t, await Tensor.randn([2, 93, 64], 2), await Tensor.randn([2, 3, 8, 64, 64], 3)],
  'enhancer_unet.pt': [await Tensor.randn([2, 4, 16, 16, 16], 4), t, await Tensor.randn([2, 77, 64], 5)],
};
console.log(`| network (${dir}, batch 2, 1 thread) | plain ms/call | frozen | frozen / plain | frozen + optimize_for_inference |`);
console.log('|---|---|---|---|---|');
for (const [file, args] of Object.entries(inputs)) {
  const ms = {};
  for (const mode of ['plain', 'freeze', 'optimize']) {
    const m = await TorchModule.load(join(dir, file), { freeze: mode !== 'plain', optimize: mode === 'optimize' });
    for (let k = 0; k < 3; k++) (await m.forwardTensor(args)).dispose();
    const rounds = [];
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      for (let k = 0; k < 5; k++) (await m.forwardTensor(args)).dispose();
      rounds.push((performance.now() - t0) / 5);
    }
    ms[mode] = rounds.sort((a, b) => a - b)[2];
    m.dispose();
  }
  console.log(`| ${file} | ${ms.plain.toFixed(1)} | ${ms.freeze.toFixed(1)} | ${(ms.freeze / ms.plain).toFixed(3)} | ${ms.optimize.toFixed(1)} |`);
}
