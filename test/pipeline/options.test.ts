// Option validation of a run (lib/pipeline/options.ts), of StreamingT2VPipeline.load and of
// generateLongVideo: every bad option is an InvalidArgumentError (ERR_INVALID_ARG) with the uniform
// message "Expected <what> for `<option>` but received <value>" (unknown keys: "Unknown option
// `<key>` (did you mean `<known>`?)"), thrown before any native work, any model load or any file.
// Then property-based fuzzing (fast-check) of resolveGenerateOptions and of real runs on the tiny model.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  cudaAvailable,
  generateLongVideo,
  InvalidArgumentError,
  isStreamingT2VError,
  pendingNativeTasks,
  StreamingT2VError,
  StreamingT2VPipeline,
  Tensor,
  type GeneratedFrame,
  type GenerateOptions,
} from '../../lib/index.js';
import { readManifest } from '../../lib/models/manifest.js';
import { stageDefaults } from '../../lib/pipeline/model-adapter.js';
import type { StageDefaults } from '../../lib/pipeline/models.js';
import { MAX_PROMPT_CHARS, resolveGenerateOptions, type ResolvedGenerateOptions } from '../../lib/pipeline/options.js';

const PROMPT = 'a red circle bouncing to the right on a blue background';
let defaults: StageDefaults;
let scratch: string;

beforeAll(async () => {
  defaults = stageDefaults(await readManifest('models/tiny', { verifyHashes: false }));
  scratch = mkdtempSync(join(tmpdir(), 'st2v-options-'));
});
afterAll(() => {
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
});

const resolve = (options: unknown): ResolvedGenerateOptions => resolveGenerateOptions(options as GenerateOptions, defaults, 'model-key');

/** The thrown error, asserting it is an InvalidArgumentError with code ERR_INVALID_ARG. */
function invalidError(error: unknown): InvalidArgumentError {
  expect(error).toBeInstanceOf(InvalidArgumentError);
  expect(error).toBeInstanceOf(StreamingT2VError);
  expect((error as InvalidArgumentError).code).toBe('ERR_INVALID_ARG');
  expect((error as InvalidArgumentError).name).toBe('InvalidArgumentError');
  return error as InvalidArgumentError;
}

function expectInvalid(fn: () => unknown, message: string | RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  if (thrown === undefined) throw new Error(`expected an InvalidArgumentError (${String(message)}) but nothing was thrown`);
  const e = invalidError(thrown);
  if (typeof message === 'string') expect(e.message).toBe(message);
  else expect(e.message).toMatch(message);
}

async function expectInvalidAsync(promise: Promise<unknown>, message: string | RegExp): Promise<void> {
  const thrown = await promise.then(
    () => undefined,
    (error: unknown) => error ?? new Error('rejected with nothing'),
  );
  if (thrown === undefined) throw new Error(`expected an InvalidArgumentError (${String(message)}) but the promise resolved`);
  const e = invalidError(thrown);
  if (typeof message === 'string') expect(e.message).toBe(message);
  else expect(e.message).toMatch(message);
}

const long = 'a'.repeat(MAX_PROMPT_CHARS + 1);
const shownLong = `"${'a'.repeat(57)}..."`;

// [title, options, exact message]
const CASES: [string, unknown, string][] = [
  // not an options object
  ['null options', null, 'Expected an options object for `options` but received null of type null'],
  ['a bare prompt string', PROMPT, `Expected an options object for \`options\` but received "${PROMPT}"`],
  ['an array', [PROMPT], 'Expected an options object for `options` but received an array'],
  ['a number', 42, 'Expected an options object for `options` but received 42 of type number'],
  ['undefined', undefined, 'Expected an options object for `options` but received undefined of type undefined'],
  // prompt
  ['no prompt', {}, 'Expected a non-empty string for `prompt` but received undefined of type undefined'],
  ['empty prompt', { prompt: '' }, 'Expected a non-empty string for `prompt` but received ""'],
  ['whitespace prompt', { prompt: ' \t\n ' }, 'Expected a non-empty string for `prompt` but received " \\t\\n "'],
  ['numeric prompt', { prompt: 42 }, 'Expected a non-empty string for `prompt` but received 42 of type number'],
  ['prompt as an array of strings', { prompt: ['a', 'b'] }, 'Expected a non-empty string for `prompt` but received an array'],
  [`prompt over ${MAX_PROMPT_CHARS} chars`, { prompt: long }, `Expected a string of at most ${MAX_PROMPT_CHARS} characters (the tokenizer keeps the first 75 tokens) for \`prompt\` but received ${shownLong}`],
  ['negativePrompt number', { prompt: PROMPT, negativePrompt: 5 }, 'Expected a string for `negativePrompt` but received 5 of type number'],
  ['negativePrompt too long', { prompt: PROMPT, negativePrompt: long }, `Expected a string of at most ${MAX_PROMPT_CHARS} characters (the tokenizer keeps the first 75 tokens) for \`negativePrompt\` but received ${shownLong}`],
  // numFrames
  ['numFrames NaN', { prompt: PROMPT, numFrames: Number.NaN }, 'Expected an integer in [1, 1000000] for `numFrames` but received NaN of type number'],
  ['numFrames Infinity', { prompt: PROMPT, numFrames: Number.POSITIVE_INFINITY }, 'Expected an integer in [1, 1000000] for `numFrames` but received Infinity of type number'],
  ['numFrames negative', { prompt: PROMPT, numFrames: -5 }, 'Expected an integer in [1, 1000000] for `numFrames` but received -5 of type number'],
  ['numFrames zero', { prompt: PROMPT, numFrames: 0 }, 'Expected an integer in [1, 1000000] for `numFrames` but received 0 of type number'],
  ['numFrames float', { prompt: PROMPT, numFrames: 20.5 }, 'Expected an integer in [1, 1000000] for `numFrames` but received 20.5 of type number'],
  ['numFrames string', { prompt: PROMPT, numFrames: '20' }, 'Expected an integer in [1, 1000000] for `numFrames` but received "20"'],
  ['numFrames bigint', { prompt: PROMPT, numFrames: 20n }, 'Expected an integer in [1, 1000000] for `numFrames` but received 20n'],
  ['numFrames null', { prompt: PROMPT, numFrames: null }, 'Expected an integer in [1, 1000000] for `numFrames` but received null of type null'],
  ['numFrames above the cap', { prompt: PROMPT, numFrames: 1_000_001 }, 'Expected an integer in [1, 1000000] for `numFrames` but received 1000001 of type number'],
  // seed
  ['seed negative', { prompt: PROMPT, seed: -1 }, 'Expected an integer ≥ 0 for `seed` but received -1 of type number'],
  ['seed float', { prompt: PROMPT, seed: 1.5 }, 'Expected an integer ≥ 0 for `seed` but received 1.5 of type number'],
  ['seed beyond 2^53', { prompt: PROMPT, seed: 2 ** 53 }, 'Expected an integer ≥ 0 for `seed` but received 9007199254740992 of type number'],
  // stage1 / stage2
  ['stage1 string', { prompt: PROMPT, stage1: 'fast' }, 'Expected an object for `stage1` but received "fast"'],
  ['stage1 null', { prompt: PROMPT, stage1: null }, 'Expected an object for `stage1` but received null of type null'],
  ['stage2 array', { prompt: PROMPT, stage2: [50] }, 'Expected an object for `stage2` but received an array'],
  ['stage1.steps 0', { prompt: PROMPT, stage1: { steps: 0 } }, 'Expected an integer in [1, 1000] for `stage1.steps` but received 0 of type number'],
  ['stage1.steps float', { prompt: PROMPT, stage1: { steps: 2.5 } }, 'Expected an integer in [1, 1000] for `stage1.steps` but received 2.5 of type number'],
  ['stage2.steps above 1000', { prompt: PROMPT, stage2: { steps: 1001 } }, 'Expected an integer in [1, 1000] for `stage2.steps` but received 1001 of type number'],
  ['stage1.guidance negative', { prompt: PROMPT, stage1: { guidance: -1 } }, 'Expected a number in [0, 100] for `stage1.guidance` but received -1 of type number'],
  ['stage1.guidance string', { prompt: PROMPT, stage1: { guidance: '9' } }, 'Expected a number in [0, 100] for `stage1.guidance` but received "9"'],
  ['stage2.guidance Infinity', { prompt: PROMPT, stage2: { guidance: Number.POSITIVE_INFINITY } }, 'Expected a number in [0, 100] for `stage2.guidance` but received Infinity of type number'],
  ['stage2.eta above 1', { prompt: PROMPT, stage2: { eta: 1.5 } }, 'Expected a number in [0, 1] for `stage2.eta` but received 1.5 of type number'],
  ['stage2.eta NaN', { prompt: PROMPT, stage2: { eta: Number.NaN } }, 'Expected a number in [0, 1] for `stage2.eta` but received NaN of type number'],
  ['stage2.replaceOverlap boolean', { prompt: PROMPT, stage2: { replaceOverlap: true } }, 'Expected a number in [0, 1] for `stage2.replaceOverlap` but received true of type boolean'],
  ['stage2.replaceOverlap above 1', { prompt: PROMPT, stage2: { replaceOverlap: 1.5 } }, 'Expected a number in [0, 1] for `stage2.replaceOverlap` but received 1.5 of type number'],
  ['stage2.replaceoverlap misspelt', { prompt: PROMPT, stage2: { replaceoverlap: 1 } }, 'Unknown option `stage2.replaceoverlap` (did you mean `stage2.replaceOverlap`?)'],
  ['stage2.cutRetries fractional', { prompt: PROMPT, stage2: { cutRetries: 1.5 } }, 'Expected an integer in [0, 10] for `stage2.cutRetries` but received 1.5 of type number'],
  ['stage2.cutRetries above 10', { prompt: PROMPT, stage2: { cutRetries: 11 } }, 'Expected an integer in [0, 10] for `stage2.cutRetries` but received 11 of type number'],
  ['stage2.cutRetries negative', { prompt: PROMPT, stage2: { cutRetries: -1 } }, 'Expected an integer in [0, 10] for `stage2.cutRetries` but received -1 of type number'],
  ['stage2.cutRetries string', { prompt: PROMPT, stage2: { cutRetries: '2' } }, 'Expected an integer in [0, 10] for `stage2.cutRetries` but received "2"'],
  ['stage2.cutRetry misspelt', { prompt: PROMPT, stage2: { cutRetry: 2 } }, 'Unknown option `stage2.cutRetry` (did you mean `stage2.cutRetries`?)'],
  // enhance
  ['enhance string', { prompt: PROMPT, enhance: 'yes' }, 'Expected a boolean or an options object for `enhance` but received "yes"'],
  ['enhance number', { prompt: PROMPT, enhance: 1 }, 'Expected a boolean or an options object for `enhance` but received 1 of type number'],
  ['enhance null', { prompt: PROMPT, enhance: null }, 'Expected a boolean or an options object for `enhance` but received null of type null'],
  ['enhance array', { prompt: PROMPT, enhance: [] }, 'Expected a boolean or an options object for `enhance` but received an array'],
  ['enhance.steps negative', { prompt: PROMPT, enhance: { steps: -2 } }, 'Expected an integer in [1, 1000] for `enhance.steps` but received -2 of type number'],
  ['enhance.guidance NaN', { prompt: PROMPT, enhance: { guidance: Number.NaN } }, 'Expected a number in [0, 100] for `enhance.guidance` but received NaN of type number'],
  ['enhance.rescale above 1', { prompt: PROMPT, enhance: { rescale: 1.5 } }, 'Expected a number in [0, 1] for `enhance.rescale` but received 1.5 of type number'],
  ['enhance.noiseLevel 1', { prompt: PROMPT, enhance: { noiseLevel: 1 } }, 'Expected an integer in [2, 999] for `enhance.noiseLevel` but received 1 of type number'],
  // found by the fuzz below: t = 999 of a zero-terminal-SNR schedule has σ = ∞ (stage 3 failed after stages 1-2)
  ['enhance.noiseLevel = the train steps (σ = ∞)', { prompt: PROMPT, enhance: { noiseLevel: 1000 } }, 'Expected an integer in [2, 999] for `enhance.noiseLevel` but received 1000 of type number'],
  ['enhance.noiseLevel above the train steps', { prompt: PROMPT, enhance: { noiseLevel: 1001 } }, 'Expected an integer in [2, 999] for `enhance.noiseLevel` but received 1001 of type number'],
  // more steps than a low noise level has timesteps repeat a sigma (also failed only in stage 3)
  ['enhance.steps too many for noiseLevel 2', { prompt: PROMPT, enhance: { noiseLevel: 2, steps: 5 } }, 'Expected an integer in [1, 4] (the most steps `enhance.noiseLevel` 2 allows) for `enhance.steps` but received 5 of type number'],
  ['enhance.steps too many for noiseLevel 10', { prompt: PROMPT, enhance: { noiseLevel: 10, steps: 40 } }, 'Expected an integer in [1, 28] (the most steps `enhance.noiseLevel` 10 allows) for `enhance.steps` but received 40 of type number'],
  ['enhance.chunkFrames 0', { prompt: PROMPT, enhance: { chunkFrames: 0 } }, 'Expected an integer in [1, 4096] for `enhance.chunkFrames` but received 0 of type number'],
  ['enhance.overlapFrames = chunkFrames', { prompt: PROMPT, enhance: { chunkFrames: 8, overlapFrames: 8 } }, 'Expected an integer in [0, 7] (less than `enhance.chunkFrames`) for `enhance.overlapFrames` but received 8 of type number'],
  ['enhance.overlapFrames > chunkFrames', { prompt: PROMPT, numFrames: 40, enhance: { chunkFrames: 4, overlapFrames: 9 } }, 'Expected an integer in [0, 3] (less than `enhance.chunkFrames`) for `enhance.overlapFrames` but received 9 of type number'],
  ['enhance.overlapFrames ≥ the default chunk (24)', { prompt: PROMPT, enhance: { overlapFrames: 24 } }, 'Expected an integer in [0, 23] (less than `enhance.chunkFrames`) for `enhance.overlapFrames` but received 24 of type number'],
  ['enhance.overlapFrames negative', { prompt: PROMPT, enhance: { overlapFrames: -1 } }, 'Expected an integer in [0, 4095] for `enhance.overlapFrames` but received -1 of type number'],
  ['enhance.layout unknown', { prompt: PROMPT, enhance: { layout: 'stretch' } }, `Expected 'pad' or 'crop' for \`enhance.layout\` but received "stretch"`],
  ['enhance.encodeBatch 0', { prompt: PROMPT, enhance: { encodeBatch: 0 } }, 'Expected an integer in [1, 4096] for `enhance.encodeBatch` but received 0 of type number'],
  ['enhance.positiveSuffix number', { prompt: PROMPT, enhance: { positiveSuffix: 3 } }, 'Expected a string for `enhance.positiveSuffix` but received 3 of type number'],
  // stateDir / signal / onProgress
  ['stateDir empty', { prompt: PROMPT, stateDir: '' }, 'Expected a directory path for `stateDir` but received ""'],
  ['stateDir number', { prompt: PROMPT, stateDir: 7 }, 'Expected a directory path for `stateDir` but received 7 of type number'],
  ['signal is a plain object', { prompt: PROMPT, signal: { aborted: false } }, 'Expected an AbortSignal for `signal` but received an object'],
  ['signal is the AbortController itself', { prompt: PROMPT, signal: new AbortController() }, 'Expected an AbortSignal for `signal` but received an object'],
  ['signal true', { prompt: PROMPT, signal: true }, 'Expected an AbortSignal for `signal` but received true of type boolean'],
  ['onProgress string', { prompt: PROMPT, onProgress: 'console.log' }, 'Expected a function for `onProgress` but received "console.log"'],
  ['onProgress object', { prompt: PROMPT, onProgress: { next() {} } }, 'Expected a function for `onProgress` but received an object'],
  ['onWarning string', { prompt: PROMPT, onWarning: 'console.warn' }, 'Expected a function for `onWarning` but received "console.warn"'],
  ['onwarning (case)', { prompt: PROMPT, onwarning: () => {} }, 'Unknown option `onwarning` (did you mean `onWarning`?)'],
  // unknown or misspelt keys, top level and nested
  ['numFrame', { prompt: PROMPT, numFrame: 20 }, 'Unknown option `numFrame` (did you mean `numFrames`?)'],
  ['num_frames', { prompt: PROMPT, num_frames: 20 }, 'Unknown option `num_frames` (did you mean `numFrames`?)'],
  ['frames', { prompt: PROMPT, frames: 20 }, 'Unknown option `frames` (did you mean `numFrames`?)'],
  ['Prompt (case)', { Prompt: PROMPT }, 'Unknown option `Prompt` (did you mean `prompt`?)'],
  ['negative', { prompt: PROMPT, negative: 'blurry' }, 'Unknown option `negative` (did you mean `negativePrompt`?)'],
  ['onprogress', { prompt: PROMPT, onprogress: () => {} }, 'Unknown option `onprogress` (did you mean `onProgress`?)'],
  ['a junk key (no suggestion)', { prompt: PROMPT, xyzzy: 1 }, 'Unknown option `xyzzy`'],
  ['stage1.step', { prompt: PROMPT, stage1: { step: 2 } }, 'Unknown option `stage1.step` (did you mean `stage1.steps`?)'],
  ['stage2.etta', { prompt: PROMPT, stage2: { etta: 1 } }, 'Unknown option `stage2.etta` (did you mean `stage2.eta`?)'],
  ['stage1.guidance_scale', { prompt: PROMPT, stage1: { guidance_scale: 9 } }, 'Unknown option `stage1.guidance_scale` (did you mean `stage1.guidance`?)'],
  ['enhance.chunk', { prompt: PROMPT, enhance: { chunk: 24 } }, 'Unknown option `enhance.chunk` (did you mean `enhance.chunkFrames`?)'],
  ['enhance.overlap', { prompt: PROMPT, enhance: { overlap: 8 } }, 'Unknown option `enhance.overlap` (did you mean `enhance.overlapFrames`?)'],
  ['enhance.noise_level', { prompt: PROMPT, enhance: { noise_level: 600 } }, 'Unknown option `enhance.noise_level` (did you mean `enhance.noiseLevel`?)'],
];

describe('resolveGenerateOptions rejects bad options with the uniform message (no model, no native call)', () => {
  it(`has at least 30 cases (${CASES.length})`, () => {
    expect(CASES.length).toBeGreaterThanOrEqual(30);
  });

  it.each(CASES)('%s', (_title, options, message) => {
    expectInvalid(() => resolve(options), message);
    // option name and received value both appear in every "Expected ..." message
    if (message.startsWith('Expected')) expect(message).toMatch(/^Expected .+ for `[\w.]+` but received .+$/s);
  });

  it('the first bad option is reported, in declaration order (prompt before numFrames)', () => {
    expectInvalid(() => resolve({ prompt: '', numFrames: -1 }), 'Expected a non-empty string for `prompt` but received ""');
  });

  it('enhance: false skips every enhancer check; a frozen or null-prototype object is accepted', () => {
    expect(resolve({ prompt: PROMPT, enhance: false }).enhance).toBe(false);
    const bare = Object.assign(Object.create(null) as object, { prompt: PROMPT, numFrames: 3 });
    expect(resolve(Object.freeze(bare)).numFrames).toBe(3);
  });
});

describe('resolveGenerateOptions accepts the edges and applies the manifest defaults', () => {
  it('defaults come from models/tiny/manifest.json', () => {
    const r = resolve({ prompt: PROMPT });
    expect(r.numFrames).toBe(80);
    expect(r.seed).toBe(33);
    expect(r.negativePrompt).toBe('');
    expect(r.stage1).toEqual({ steps: 50, guidance: 9 });
    expect(r.stage2).toEqual({ steps: 50, guidance: 7.5, eta: 1, replaceOverlap: 0, cutRetries: 0 }); // tiny's manifest has neither replace_overlap nor cut_retries
    expect(r.enhance).toMatchObject({ steps: 30, guidance: 7.5, rescale: 0.2, noiseLevel: 600, chunkFrames: 24, overlapFrames: 8, layout: 'pad', size: 128, encodeBatch: 8, decodeBatch: 8 });
    expect(defaults.stage3.scheduler.numTrainTimesteps).toBe(1000);
    expect(defaults.stage3.scheduler.zeroTerminalSnr).toBe(true);
    expect(r.modelKey).toBe('model-key');
    expect(r.identity).toEqual({ prompt: PROMPT, negativePrompt: '', numFrames: 80, seed: 33, stage1: r.stage1, stage2: r.stage2 });
  });

  it('a prompt of exactly MAX_PROMPT_CHARS, a padded prompt, numFrames 1 and 1_000_000, seed 0 and 2^53-1', () => {
    expect(resolve({ prompt: 'a'.repeat(MAX_PROMPT_CHARS) }).prompt.length).toBe(MAX_PROMPT_CHARS);
    expect(resolve({ prompt: '  padded  ' }).prompt).toBe('  padded  ');
    expect(resolve({ prompt: PROMPT, numFrames: 1 }).numFrames).toBe(1);
    expect(resolve({ prompt: PROMPT, numFrames: 1_000_000 }).numFrames).toBe(1_000_000);
    expect(resolve({ prompt: PROMPT, seed: 0 }).seed).toBe(0);
    expect(resolve({ prompt: PROMPT, seed: Number.MAX_SAFE_INTEGER }).seed).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('frames vs chunks: a chunk longer than the video is fine; the default overlap shrinks below a small chunk', () => {
    const short = resolve({ prompt: PROMPT, numFrames: 5, enhance: { chunkFrames: 24, overlapFrames: 23 } });
    expect(short.enhance).toMatchObject({ chunkFrames: 24, overlapFrames: 23 });
    expect(resolve({ prompt: PROMPT, enhance: { chunkFrames: 4 } }).enhance).toMatchObject({ chunkFrames: 4, overlapFrames: 3 });
    expect(resolve({ prompt: PROMPT, enhance: { chunkFrames: 1 } }).enhance).toMatchObject({ chunkFrames: 1, overlapFrames: 0 });
    expect(resolve({ prompt: PROMPT, enhance: { chunkFrames: 8, overlapFrames: 0 } }).enhance).toMatchObject({ chunkFrames: 8, overlapFrames: 0 });
  });

  it('noise level / steps edges: 999 with 1000 steps, 2 with 4 steps, 10 with 28 steps', () => {
    expect(resolve({ prompt: PROMPT, enhance: { noiseLevel: 999, steps: 1000 } }).enhance).toMatchObject({ noiseLevel: 999, steps: 1000 });
    expect(resolve({ prompt: PROMPT, enhance: { noiseLevel: 2, steps: 4 } }).enhance).toMatchObject({ noiseLevel: 2, steps: 4 });
    expect(resolve({ prompt: PROMPT, enhance: { noiseLevel: 10, steps: 28 } }).enhance).toMatchObject({ noiseLevel: 10, steps: 28 });
  });

  it('undefined values mean "default"; guidance 0 and eta 0 are allowed', () => {
    const r = resolve({ prompt: PROMPT, numFrames: undefined, stage1: { steps: undefined, guidance: 0 }, stage2: { eta: 0 }, enhance: true });
    expect(r.numFrames).toBe(80);
    expect(r.stage1).toEqual({ steps: 50, guidance: 0 });
    expect(r.stage2.eta).toBe(0);
    expect(r.enhance).not.toBe(false);
  });

  it('stage2.cutRetries: the manifest default unless given, and part of the run identity (resume key)', () => {
    expect(resolve({ prompt: PROMPT, stage2: { cutRetries: 3 } }).stage2.cutRetries).toBe(3);
    const on = resolveGenerateOptions({ prompt: PROMPT }, { ...defaults, stage2: { ...defaults.stage2, cutRetries: 2 } }, 'model-key');
    expect(on.stage2.cutRetries).toBe(2);
    const off = resolveGenerateOptions({ prompt: PROMPT, stage2: { cutRetries: 0 } }, { ...defaults, stage2: { ...defaults.stage2, cutRetries: 2 } }, 'model-key');
    expect(off.stage2.cutRetries).toBe(0);
    expect(JSON.stringify(on.identity)).not.toBe(JSON.stringify(off.identity));
  });

  it('stage2.replaceOverlap: the manifest default unless given, and part of the run identity (resume key)', () => {
    expect(resolve({ prompt: PROMPT, stage2: { replaceOverlap: 1 } }).stage2.replaceOverlap).toBe(1);
    const on = resolveGenerateOptions({ prompt: PROMPT }, { ...defaults, stage2: { ...defaults.stage2, replaceOverlap: 0.5 } }, 'model-key');
    expect(on.stage2.replaceOverlap).toBe(0.5);
    const off = resolveGenerateOptions({ prompt: PROMPT, stage2: { replaceOverlap: 0 } }, { ...defaults, stage2: { ...defaults.stage2, replaceOverlap: 0.5 } }, 'model-key');
    expect(off.stage2.replaceOverlap).toBe(0);
    expect(on.identity).not.toEqual(off.identity);
  });
});

// ---- load / generate / generateLongVideo: validation before any native work --------------------

/** Native state that must not move when validation fails. */
function nativeState(): { tensors: number; pending: number } {
  return { tensors: Tensor.liveCount(), pending: pendingNativeTasks() };
}

describe('StreamingT2VPipeline.load validates before loading anything', () => {
  it.skipIf(cudaAvailable())("device 'cuda' on a build without CUDA", async () => {
    const before = nativeState();
    await expectInvalidAsync(
      StreamingT2VPipeline.load({ device: 'cuda' }),
      'Expected an available device for `device` but received "cuda": this libtorch build has no usable CUDA device (use \'cpu\' or \'auto\')',
    );
    expect(nativeState()).toEqual(before);
  });

  it('bad device string, misspelt key, threads 0, maxConcurrentRuns 1.5, non-object', async () => {
    const before = nativeState();
    await expectInvalidAsync(StreamingT2VPipeline.load({ device: 'gpu' }), `Expected 'auto', 'cpu', 'cuda' or 'cuda:N' for \`device\` but received "gpu"`);
    await expectInvalidAsync(StreamingT2VPipeline.load({ devise: 'cpu' } as never), 'Unknown option `devise` (did you mean `device`?)');
    await expectInvalidAsync(StreamingT2VPipeline.load({ device: 'cpu', threads: 0 }), 'Expected an integer in [1, 1024] for `threads` but received 0 of type number');
    await expectInvalidAsync(StreamingT2VPipeline.load({ device: 'cpu', maxConcurrentRuns: 1.5 }), 'Expected an integer in [1, 64] for `maxConcurrentRuns` but received 1.5 of type number');
    await expectInvalidAsync(StreamingT2VPipeline.load('models/tiny' as never), 'Expected an options object for `options` but received "models/tiny"');
    expect(nativeState()).toEqual(before);
  });
});

describe('generateLongVideo validates every option before loading a model or creating a file', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['whitespace prompt', { prompt: '   ' }, 'Expected a non-empty string for `prompt` but received "   "'],
    ['numFrame', { prompt: PROMPT, numFrame: 20 }, 'Unknown option `numFrame` (did you mean `numFrames`?)'],
    ['overlap ≥ chunk', { prompt: PROMPT, numFrames: 20, enhance: { chunkFrames: 4, overlapFrames: 4 } }, 'Expected an integer in [0, 3] (less than `enhance.chunkFrames`) for `enhance.overlapFrames` but received 4 of type number'],
    ['enhance.chunk', { prompt: PROMPT, enhance: { chunk: 8 } }, 'Unknown option `enhance.chunk` (did you mean `enhance.chunkFrames`?)'],
    ['fps 0', { prompt: PROMPT, fps: 0 }, 'Expected a number in [0.1, 1000] for `fps` but received 0 of type number'],
    ['fps NaN', { prompt: PROMPT, fps: Number.NaN }, 'Expected a number in [0.1, 1000] for `fps` but received NaN of type number'],
    ['empty previewOutput', { prompt: PROMPT, previewOutput: '' }, 'Expected a non-empty path for `previewOutput` but received ""'],
    ['onFrame not a function', { prompt: PROMPT, onFrame: 'print' }, 'Expected a function for `onFrame` but received "print"'],
    ['pipeline not a pipeline', { prompt: PROMPT, pipeline: {} }, 'Expected a StreamingT2VPipeline for `pipeline` but received an object'],
    ['outputs misspelt', { prompt: PROMPT, outptu: 'x.mp4' }, 'Unknown option `outptu` (did you mean `output`?)'],
    ['enhancing with loadEnhancer: false', { prompt: PROMPT, loadEnhancer: false }, 'Expected `enhance: false` for a pipeline loaded with `loadEnhancer: false` but received enhancement options'],
    ['modelDir number', { prompt: PROMPT, modelDir: 3 }, 'Expected a directory path for `modelDir` but received 3 of type number'],
  ];
  it.each(cases)('%s: rejects, no file or directory, no tensor, no native task', async (_title, extra, message) => {
    const dir = join(scratch, `glv-${Math.random().toString(36).slice(2)}`);
    const before = nativeState();
    await expectInvalidAsync(generateLongVideo({ output: join(dir, 'out', 'x.mp4'), pngDir: join(dir, 'png'), device: 'cpu', ...extra } as never), message);
    expect(nativeState()).toEqual(before);
    expect(existsSync(dir)).toBe(false);
  });

  it('null options', async () => {
    await expectInvalidAsync(generateLongVideo(null as never), 'Expected an options object for `options` but received null of type null');
  });
});

// ---- loaded pipelines -------------------------------------------------------------------------

/** Forces a full GC (to tell handles left to the GC from real leaks). */
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
async function collectGarbage(): Promise<void> {
  gc();
  await new Promise((r) => setTimeout(r, 20));
  gc();
}

// threads: 1 — on a busy 2-core machine OpenMP spinning makes 2 threads ~10x slower.
let pipe: StreamingT2VPipeline | undefined;
let noEnhancer: StreamingT2VPipeline | undefined;
async function loadPipe(): Promise<StreamingT2VPipeline> {
  pipe ??= await StreamingT2VPipeline.load({ device: 'cpu', threads: 1 });
  return pipe;
}
afterAll(() => {
  pipe?.dispose();
  noEnhancer?.dispose();
});

describe('a loaded pipeline validates generate() options before any native call', () => {
  beforeAll(async () => {
    await loadPipe();
    noEnhancer = await StreamingT2VPipeline.load({ device: 'cpu', threads: 1, loadEnhancer: false });
  });

  it('enhancement requested (by default or explicitly) on a pipeline loaded with loadEnhancer: false', async () => {
    const before = nativeState();
    const msg = 'Expected `enhance: false` for a pipeline loaded with `loadEnhancer: false` but received enhancement options';
    await expectInvalidAsync(noEnhancer!.generate({ prompt: PROMPT, numFrames: 4 }).next(), msg);
    await expectInvalidAsync(noEnhancer!.generate({ prompt: PROMPT, numFrames: 4, enhance: { steps: 2 } }).next(), msg);
    expect(nativeState()).toEqual(before);
    // and enhance: false works on it
    const frames: GeneratedFrame[] = [];
    for await (const f of noEnhancer!.generate({ prompt: PROMPT, numFrames: 4, stage1: { steps: 1 }, enhance: false })) frames.push(f);
    expect(frames.map((f) => `${f.stage}${f.index}`)).toEqual(['preview0', 'preview1', 'preview2', 'preview3']);
  });

  it('generateLongVideo with a loaded pipeline plus a load option (device) is a conflict', async () => {
    const dir = join(scratch, 'conflict');
    const before = nativeState();
    await expectInvalidAsync(
      generateLongVideo({ prompt: PROMPT, pipeline: pipe!, device: 'cuda', output: join(dir, 'x.mp4') }),
      'Expected no pipeline-loading option when `pipeline` is given (it is already loaded) for `device` but received "cuda"',
    );
    await expectInvalidAsync(
      generateLongVideo({ prompt: PROMPT, pipeline: noEnhancer!, output: join(dir, 'x.mp4'), enhance: { overlapFrames: 30 } }),
      'Expected an integer in [0, 23] (less than `enhance.chunkFrames`) for `enhance.overlapFrames` but received 30 of type number',
    );
    expect(nativeState()).toEqual(before);
    expect(existsSync(dir)).toBe(false);
  });

  it('bad options on generate(): rejected on the first next(), nothing native started', async () => {
    const before = nativeState();
    for (const [options, message] of [
      [{ prompt: PROMPT, numFrames: Number.POSITIVE_INFINITY }, 'Expected an integer in [1, 1000000] for `numFrames` but received Infinity of type number'],
      [{ prompt: PROMPT, stage1: { step: 1 } }, 'Unknown option `stage1.step` (did you mean `stage1.steps`?)'],
      [{ prompt: PROMPT, signal: 'abort' }, 'Expected an AbortSignal for `signal` but received "abort"'],
      [{ prompt: PROMPT, onProgress: 1 }, 'Expected a function for `onProgress` but received 1 of type number'],
    ] as const) {
      await expectInvalidAsync(pipe!.generate(options as never).next(), message);
    }
    expect(nativeState()).toEqual(before);
  });
});

// ---- property-based fuzzing -------------------------------------------------------------------

const TOP = ['prompt', 'negativePrompt', 'numFrames', 'seed', 'stage1', 'stage2', 'enhance', 'stateDir', 'signal', 'onProgress'];
const SUB = ['steps', 'guidance', 'eta', 'rescale', 'noiseLevel', 'chunkFrames', 'overlapFrames', 'layout', 'negativePrompt', 'positiveSuffix', 'encodeBatch', 'decodeBatch'];
const JUNK = ['numFrame', 'step', 'chunk', 'Prompt', '__proto__', 'constructor', 'toString', 'hasOwnProperty', ''];

const scalar = fc.oneof(
  fc.integer({ min: -5, max: 2000 }),
  fc.double(),
  fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 0.5, 1e300, 2 ** 53),
  fc.bigInt({ min: -5n, max: 5n }),
  fc.string({ maxLength: 12 }),
  fc.constantFrom('', '   ', 'pad', 'crop', 'a red circle', 'x'.repeat(MAX_PROMPT_CHARS + 1)),
  fc.boolean(),
  fc.constantFrom(null, undefined, Symbol('s'), () => {}, new AbortController().signal, new AbortController(), [], [1]),
);
const nested = fc
  .array(fc.tuple(fc.oneof(fc.constantFrom(...SUB), fc.constantFrom(...JUNK), fc.string({ maxLength: 8 })), scalar), { maxLength: 5 })
  .map((entries) => Object.fromEntries(entries));
const value = fc.oneof({ weight: 4, arbitrary: scalar }, { weight: 2, arbitrary: nested }, { weight: 1, arbitrary: fc.anything() });
const optionObject = fc
  .array(fc.tuple(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...TOP) }, { weight: 1, arbitrary: fc.constantFrom(...JUNK) }, { weight: 1, arbitrary: fc.string({ maxLength: 10 }) }), value), { maxLength: 8 })
  .map((entries) => {
    const o: Record<string, unknown> = {};
    for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
    return o;
  });
// Mostly-plausible objects, so that resolving succeeds a fair share of the time.
const plausible = fc.record(
  {
    prompt: fc.oneof(fc.constant(PROMPT), fc.string({ maxLength: 20 })),
    numFrames: fc.oneof(fc.integer({ min: -2, max: 300 }), scalar),
    seed: fc.oneof(fc.nat(), scalar),
    stage1: fc.record({ steps: fc.integer({ min: 0, max: 60 }), guidance: fc.double({ min: -1, max: 120, noNaN: true }) }, { requiredKeys: [] }),
    stage2: fc.record({ steps: fc.integer({ min: 0, max: 60 }), eta: fc.double({ min: -0.5, max: 1.5 }) }, { requiredKeys: [] }),
    enhance: fc.oneof(fc.boolean(), fc.record({ chunkFrames: fc.integer({ min: 0, max: 30 }), overlapFrames: fc.integer({ min: -1, max: 30 }), layout: fc.constantFrom('pad', 'crop', 'fill'), noiseLevel: fc.integer({ min: 0, max: 1100 }) }, { requiredKeys: [] })),
  },
  { requiredKeys: ['prompt'] },
);

/** Checks the outcome of one resolve: resolved values are in range, errors are typed and well-formed. */
function checkResolveOutcome(options: unknown): 'ok' | 'invalid' {
  let r: ResolvedGenerateOptions;
  try {
    r = resolve(options);
  } catch (error) {
    if (!isStreamingT2VError(error)) throw new Error(`non-StreamingT2VError escaped: ${String(error)}`, { cause: error });
    const e = invalidError(error);
    expect(e.message).toMatch(/^(Expected .+ for `[\w.]+` but received .+|Unknown option `.*`( \(did you mean `[\w.]+`\?\))?)$/s);
    return 'invalid';
  }
  expect(r.prompt.trim().length).toBeGreaterThan(0);
  expect(r.prompt.length).toBeLessThanOrEqual(MAX_PROMPT_CHARS);
  expect(Number.isInteger(r.numFrames) && r.numFrames >= 1).toBe(true);
  expect(Number.isInteger(r.seed) && r.seed >= 0).toBe(true);
  expect(Number.isInteger(r.stage1.steps) && Number.isInteger(r.stage2.steps)).toBe(true);
  expect(r.stage2.eta >= 0 && r.stage2.eta <= 1).toBe(true);
  if (r.enhance !== false) {
    expect(r.enhance.overlapFrames).toBeLessThan(r.enhance.chunkFrames);
    expect(r.enhance.overlapFrames).toBeGreaterThanOrEqual(0);
    expect(['pad', 'crop']).toContain(r.enhance.layout);
  }
  return 'ok';
}

describe('fuzz: resolveGenerateOptions never crashes untyped and never hangs', () => {
  it('random option objects (known, junk and misspelt keys; values of every type): resolve or InvalidArgumentError', () => {
    const seen = { ok: 0, invalid: 0 };
    const started = performance.now();
    fc.assert(
      fc.property(fc.oneof(optionObject, plausible, fc.anything()), (options) => {
        seen[checkResolveOutcome(options)]++;
      }),
      { numRuns: 3000, seed: 20240601, interruptAfterTimeLimit: 20_000, markInterruptAsFailure: true },
    );
    expect(seen.ok + seen.invalid).toBe(3000);
    expect(seen.ok).toBeGreaterThan(20); // the plausible arbitrary does resolve
    expect(seen.invalid).toBeGreaterThan(1000);
    expect(performance.now() - started).toBeLessThan(20_000);
  });

  it('random seeds too (a new case set per run; failures print the seed to replay)', () => {
    fc.assert(
      fc.property(fc.oneof(optionObject, plausible), (options) => {
        checkResolveOutcome(options);
      }),
      { numRuns: 1000, interruptAfterTimeLimit: 10_000, markInterruptAsFailure: true },
    );
  });
});

describe('fuzz: real runs through a loaded pipeline (tiny model, 1-2 steps)', () => {
  beforeAll(loadPipe);
  // Mostly valid, sometimes not: numFrames ≤ 20, enhance false or tiny.
  const runOptions = fc.record({
    prompt: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(PROMPT, 'a cat', 'ünïcödé 🎥 prompt') }, { weight: 1, arbitrary: fc.constantFrom('', '  ') }),
    negativePrompt: fc.constantFrom('', 'blurry'),
    numFrames: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 20 }) }, { weight: 1, arbitrary: fc.constantFrom(0, -3, 2.5, Number.NaN) }),
    seed: fc.nat({ max: 2 ** 31 }),
    stage1: fc.record({ steps: fc.integer({ min: 1, max: 2 }), guidance: fc.constantFrom(0, 1, 9) }),
    stage2: fc.record({
      steps: fc.constant(1),
      guidance: fc.constantFrom(0, 7.5),
      eta: fc.oneof({ weight: 9, arbitrary: fc.constantFrom(0, 0.5, 1) }, { weight: 1, arbitrary: fc.constantFrom(-1, 2) }),
    }),
    enhance: fc.oneof(
      { weight: 2, arbitrary: fc.constant(false as const) },
      {
        weight: 1,
        arbitrary: fc.record({
          steps: fc.integer({ min: 1, max: 2 }),
          chunkFrames: fc.integer({ min: 4, max: 24 }),
          overlapFrames: fc.integer({ min: 0, max: 6 }),
          layout: fc.constantFrom('pad', 'crop'),
          noiseLevel: fc.constantFrom(2, 300, 600, 999, 1000),
        }),
      },
    ),
  });

  it('15 runs: either the exact frames, or a typed error before any frame; tensors back to baseline', { timeout: 120_000 }, async () => {
    let leftToGc = 0;
    const outcomes = { ok: 0, invalid: 0 };
    await fc.assert(
      fc.asyncProperty(runOptions, async (options) => {
        await collectGarbage();
        const baseline = Tensor.liveCount();
        const expected = (() => {
          try {
            return resolve(options);
          } catch {
            return undefined;
          }
        })();
        const frames: GeneratedFrame[] = [];
        let failure: unknown;
        try {
          for await (const f of pipe!.generate(options as GenerateOptions)) frames.push(f);
        } catch (error) {
          failure = error;
        }
        if (expected === undefined) {
          invalidError(failure);
          expect(frames).toEqual([]);
          outcomes.invalid++;
        } else {
          if (failure !== undefined) throw failure;
          const n = expected.numFrames;
          const preview = frames.filter((f) => f.stage === 'preview');
          const final = frames.filter((f) => f.stage === 'final');
          expect(preview.map((f) => f.index)).toEqual([...Array(n).keys()]);
          expect(final.map((f) => f.index)).toEqual(expected.enhance === false ? [] : [...Array(n).keys()]);
          expect(preview.every((f) => f.width === 64 && f.height === 64 && f.data.length === 64 * 64 * 3)).toBe(true);
          if (expected.enhance !== false) {
            const w = expected.enhance.layout === 'pad' ? defaults.stage3.padWidth : defaults.stage3.size;
            expect(final.every((f) => f.height === 128 && f.width === w && f.data.length === w * 128 * 3)).toBe(true);
          }
          outcomes.ok++;
        }
        expect(pendingNativeTasks()).toBe(0);
        if (Tensor.liveCount() !== baseline) leftToGc++;
        await collectGarbage();
        expect(Tensor.liveCount()).toBe(baseline);
      }),
      { numRuns: 15, seed: 7, interruptAfterTimeLimit: 100_000, markInterruptAsFailure: true },
    );
    expect(outcomes.ok + outcomes.invalid).toBe(15);
    expect(outcomes.ok).toBeGreaterThan(0);
    console.log(`fuzz runs: ${outcomes.ok} ok, ${outcomes.invalid} invalid; ${leftToGc} left handles to the GC`);
    if (leftToGc > 0) {
      // Known: one tensor handle per run is freed by the GC rather than disposed (see the report).
      console.warn(`fuzz: ${leftToGc}/15 runs left tensor handles for the GC to free (no leak after GC)`);
    }
  });
});

// A sanity check that the scratch directory stayed empty apart from what the tests above made.
describe('no stray files', () => {
  it('validation failures created nothing under the scratch directory', () => {
    expect(readdirSync(scratch)).toEqual([]);
  });
});
