// Stage 3 alone on given 64² clips: the library's own enhancer run (SDEdit, one noise field, randomized blending,
// DPM++(2M) SDE) over raw RGB24 frames, so that enhance_probe.py can feed it true world renders and compare the
// result with the true 128² renders. Not a public API: it imports the pipeline's internals from dist/.
//
//   node bench/quality/enhance_true.mjs IN.rgb FRAMES OUT.rgb "prompt" [--model DIR] [--seed 33] [--noise-level N]
//        [--steps N] [--guidance W] [--threads 1]
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { setNumThreads } from '../../dist/lib/device.js';
import { enhance } from '../../dist/lib/pipeline/enhance-run.js';
import { loadPipelineModels } from '../../dist/lib/pipeline/model-adapter.js';
import { resolveGenerateOptions } from '../../dist/lib/pipeline/options.js';
import { ProgressTracker } from '../../dist/lib/pipeline/progress.js';
import { derivedSeeds } from '../../dist/lib/pipeline/seeds.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    model: { type: 'string' }, seed: { type: 'string', default: '33' }, 'noise-level': { type: 'string' },
    steps: { type: 'string' }, guidance: { type: 'string' }, threads: { type: 'string', default: '1' },
  },
});
const [input, framesArg, output, prompt] = positionals;
if (!input || !framesArg || !output || !prompt) {
  console.error('usage: enhance_true.mjs IN.rgb FRAMES OUT.rgb "prompt" [--model DIR] [--seed N] [--noise-level N] [--steps N] [--guidance W]');
  process.exit(2);
}
const frames = Number(framesArg);
const rgb = readFileSync(input);
const size = Math.round(Math.sqrt(rgb.length / frames / 3));
if (size * size * 3 * frames !== rgb.length) {
  console.error(`enhance_true: ${input} holds ${rgb.length} bytes, not ${frames} square RGB24 frames`);
  process.exit(2);
}
setNumThreads(Number(values.threads));
const models = await loadPipelineModels({ ...(values.model ? { modelDir: values.model } : {}), device: 'cpu', verifyChecksums: false, loadEnhancer: true });
try {
  const enhanceOptions = {
    layout: 'crop',
    ...(values['noise-level'] ? { noiseLevel: Number(values['noise-level']) } : {}),
    ...(values.steps ? { steps: Number(values.steps) } : {}),
    ...(values.guidance ? { guidance: Number(values.guidance) } : {}),
  };
  const o = resolveGenerateOptions({ prompt, numFrames: frames, seed: Number(values.seed), enhance: enhanceOptions }, models.defaults, models.key);
  const progress = new ProgressTracker({ numFrames: frames, stage1: { steps: 0 }, stage2: { steps: 0 }, enhance: o.enhance }, 0, undefined);
  const out = [];
  const frameBytes = size * size * 3;
  for await (const f of enhance(models, o, {
    frames, width: size, height: size,
    preview: async (from, count) => new Uint8Array(rgb.buffer, rgb.byteOffset + from * frameBytes, count * frameBytes),
    seeds: derivedSeeds(o.seed), progress, splitCfg: false,
  })) out.push(f.data);
  writeFileSync(output, Buffer.concat(out));
  console.log(`enhance_true: ${out.length} frames -> ${output}`);
} finally {
  models.dispose();
}
