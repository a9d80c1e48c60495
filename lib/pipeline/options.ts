/**
 * Options of a generation run, their defaults and their validation. Every check runs before any
 * native call and throws {@link InvalidArgumentError} with one message shape:
 * "Expected <what> for `<option>` but received <value>". Unknown (e.g. misspelt) keys are errors
 * that suggest the closest known key.
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import { checkSigmas } from '../schedulers/dpmpp-2m-sde.js';
import { createLogSnrCosineInterpSchedule, sdeditSigmas, type LogSnrTable } from '../schedulers/logsnr-cosine.js';
import { MAX_CUT_RETRIES } from '../models/manifest-types.js';
import type { StageDefaults } from './models.js';
import type { EnhanceLayout } from './stage3.js';
import type { ProgressEvent, StreamingT2VWarning } from './types.js';

/** Stage-3 (enhancement) options. Every field defaults to the model manifest's value. */
export interface EnhanceOptions {
  /** DPM++(2M) SDE steps. Default from the manifest (official: 30). */
  steps?: number;
  /** CFG scale. Default from the manifest (official: 7.5). */
  guidance?: number;
  /** Guidance rescale φ in [0, 1]. Default from the manifest (official: 0.2). */
  rescale?: number;
  /** SDEdit noise level: the run starts at t = noiseLevel − 1 of 1000. Default from the manifest (official: 600). */
  noiseLevel?: number;
  /** Latent frames per enhancer chunk. Default from the manifest (official: 24). */
  chunkFrames?: number;
  /** Overlapping frames between chunks (randomized blending). Default from the manifest (official: 8). */
  overlapFrames?: number;
  /** 'pad' letterboxes the square frames to the manifest width (official 1280×720); 'crop' keeps them square. Default 'pad'. */
  layout?: EnhanceLayout;
  /** Negative prompt of the enhancer. Default '' (official: the CLI's negative prompt, which defaults to ''). */
  negativePrompt?: string;
  /** Text appended to the prompt as "prompt, suffix" (official positive prompt: ''). Default ''. */
  positiveSuffix?: string;
  /** Frames per VAE-encode call. Default 8. */
  encodeBatch?: number;
  /** Frames per VAE-decode call. Default 8. */
  decodeBatch?: number;
}

/** Options of one run (`StreamingT2VPipeline.generate`). */
export interface GenerateOptions {
  /** What the video shows. Required, non-empty. Example: "a red circle bouncing on a blue background". */
  prompt: string;
  /** What to steer away from (stages 1 and 2). Default ''. */
  negativePrompt?: string;
  /** Frames of the output video (any length ≥ 1, 1200+ included). Default 80. */
  numFrames?: number;
  /** Seed of all noise (stage seeds are derived from it). Default 33 (the official seed). */
  seed?: number;
  /** Stage-1 sampler: DPM-Solver++ steps and CFG scale. Defaults from the manifest (official: 50, 9). */
  stage1?: { steps?: number; guidance?: number };
  /**
   * Stage-2 sampler: DDIM steps, CFG scale and η. Defaults from the manifest (official: 50, 7.5, 1).
   * `replaceOverlap`: the share of the sampling steps, from the first, at which the conditioning frames' own latents,
   * noised to the step's level, take the window's overlap positions, so the new frames are denoised beside the
   * frames they continue; 0 = never (the paper), 1 = every step (an addition of this library, not in the paper; see
   * `lib/pipeline/replace-overlap.ts`). Default from the manifest's `stage2.replace_overlap` (0 when absent).
   * `cutRetries`: how many times a window whose first new frame looks like a scene cut (the cut guard, an addition
   * of this library: see `lib/pipeline/cut-guard.ts`) is sampled again with the generator's next noise; 0 = never
   * (the paper), at most 10. Each retry costs one window; a retry of window 1 (the stage-1 → stage-2 handover) runs
   * stage 1 again too, with a seed derived from `seed`. When it is on, the 16 stage-1 frames are streamed once
   * window 1 is accepted, not before. Default from the manifest's `stage2.cut_retries` (0 when absent).
   * @example `{ steps: 20, guidance: 4, replaceOverlap: 0, cutRetries: 2 }`
   */
  stage2?: { steps?: number; guidance?: number; eta?: number; replaceOverlap?: number; cutRetries?: number };
  /** Stage-3 enhancement: `false` to skip, `true` or options to run. Default true. */
  enhance?: boolean | EnhanceOptions;
  /** Directory where the run persists its state after every stage-2 window, to resume after a crash or abort. Default none. */
  stateDir?: string;
  /** Aborts the run between network calls; the pipeline rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Called with progress events; exceptions thrown by it are logged and ignored. */
  onProgress?: (event: ProgressEvent) => void;
  /**
   * Called with warnings about the run's input, once each, before any network call; exceptions thrown by it are
   * logged and ignored. Default: `process.emitWarning`, each distinct warning once per process (printed to stderr
   * unless the process listens for 'warning'). Today's one warning: `PROMPT_OUTSIDE_VOCABULARY`, a prompt with words a closed-vocabulary model
   * (the embedded default model) never saw.
   * @example `{ onWarning: (w) => log.warn(w.code, w.words) }`
   */
  onWarning?: (warning: StreamingT2VWarning) => void;
}

/** Options with every default applied. */
export interface ResolvedGenerateOptions {
  prompt: string;
  negativePrompt: string;
  numFrames: number;
  seed: number;
  stage1: { steps: number; guidance: number };
  stage2: { steps: number; guidance: number; eta: number; replaceOverlap: number; cutRetries: number };
  enhance:
    | false
    | {
        steps: number;
        guidance: number;
        rescale: number;
        noiseLevel: number;
        chunkFrames: number;
        overlapFrames: number;
        layout: EnhanceLayout;
        negativePrompt: string;
        positiveSuffix: string;
        size: number;
        encodeBatch: number;
        decodeBatch: number;
      };
  stateDir?: string | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((e: ProgressEvent) => void) | undefined;
  onWarning?: ((w: StreamingT2VWarning) => void) | undefined;
  /** Everything that determines the output (for the resume key). */
  identity: unknown;
  /** Identifies the model (manifest hash). */
  modelKey: string;
}

/** The keys of {@link GenerateOptions} (also used by generateLongVideo to split its options). @internal */
export const RUN_OPTION_KEYS: readonly string[] = ['prompt', 'negativePrompt', 'numFrames', 'seed', 'stage1', 'stage2', 'enhance', 'stateDir', 'signal', 'onProgress', 'onWarning'];
const ENHANCE_KEYS = ['steps', 'guidance', 'rescale', 'noiseLevel', 'chunkFrames', 'overlapFrames', 'layout', 'negativePrompt', 'positiveSuffix', 'encodeBatch', 'decodeBatch'];

/** Maximum prompt length accepted (characters); the tokenizer keeps 75 tokens anyway. */
export const MAX_PROMPT_CHARS = 4096;

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || value === undefined || typeof value !== 'object') return `${String(value)} of type ${value === null ? 'null' : typeof value}`;
  return Array.isArray(value) ? 'an array' : 'an object';
}

/** Throws the uniform validation error. */
export function invalid(what: string, option: string, value: unknown): never {
  throw new InvalidArgumentError(`Expected ${what} for \`${option}\` but received ${show(value)}`);
}

function distance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}

/** Rejects keys that are not in `known`, suggesting the closest one. */
export function checkKeys(value: object, known: readonly string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue;
    // A key that is a (case-insensitive) prefix of a known one, or extends it, counts as close too:
    // `enhance.chunk` -> `chunkFrames`, `negative` -> `negativePrompt`, `guidance_scale` -> `guidance`.
    const lower = key.toLowerCase();
    const prefix = (k: string) => key.length >= 3 && (k.toLowerCase().startsWith(lower) || lower.startsWith(k.toLowerCase()));
    const score = (k: string) => (prefix(k) ? 0 : 1);
    const best = [...known].sort((a, b) => score(a) - score(b) || distance(key, a) - distance(key, b))[0];
    const close = best !== undefined && (prefix(best) || distance(key, best) <= Math.max(2, Math.floor(best.length / 3)));
    const hint = close ? ` (did you mean \`${where}${best}\`?)` : '';
    throw new InvalidArgumentError(`Unknown option \`${where}${key}\`${hint}`);
  }
}

/** Reads an integer option within [min, max]. */
export function intOption(value: unknown, option: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    invalid(max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer in [${min}, ${max}]`, option, value);
  }
  return value;
}

/** Reads a finite number option within [min, max]. */
export function numberOption(value: unknown, option: string, fallback: number, min: number, max = Number.POSITIVE_INFINITY): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    invalid(max === Number.POSITIVE_INFINITY ? `a finite number ≥ ${min}` : `a number in [${min}, ${max}]`, option, value);
  }
  return value;
}

function stringOption(value: unknown, option: string, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string') invalid('a string', option, value);
  if (value.length > MAX_PROMPT_CHARS) invalid(`a string of at most ${MAX_PROMPT_CHARS} characters (the tokenizer keeps the first 75 tokens)`, option, value);
  return value;
}

function objectOption(value: unknown, option: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalid('an object', option, value);
  return value as Record<string, unknown>;
}

const tables = new WeakMap<object, LogSnrTable>();

/**
 * The stage-3 noise level and step count must give a usable SDEdit schedule (finite, strictly
 * decreasing sigmas): the last timestep of a zero-terminal-SNR schedule has σ = ∞, and more steps
 * than the few timesteps below a low noise level allow repeat a sigma. Checked here, before stages
 * 1–2 run, with the very functions stage 3 uses.
 */
function checkEnhanceSchedule(d: StageDefaults, e: Record<string, unknown>): { noiseLevel: number; steps: number } {
  let table = tables.get(d.stage3.scheduler);
  if (table === undefined) {
    table = createLogSnrCosineInterpSchedule(d.stage3.scheduler);
    tables.set(d.stage3.scheduler, table);
  }
  let maxNoise = d.stage3.scheduler.numTrainTimesteps;
  while (maxNoise > 2 && !Number.isFinite(table.logSigmasVe[maxNoise - 1]!)) maxNoise--;
  const noiseLevel = intOption(e.noiseLevel, 'enhance.noiseLevel', Math.min(d.stage3.noiseLevel, maxNoise), 2, maxNoise);
  const steps = intOption(e.steps, 'enhance.steps', d.stage3.steps, 1, 1000);
  const usable = (n: number): boolean => {
    try {
      checkSigmas(sdeditSigmas(table, { steps: n, tMax: noiseLevel - 1 }).sigmas);
      return true;
    } catch {
      return false;
    }
  };
  if (!usable(steps)) {
    let most = 1;
    while (most < steps && usable(most + 1)) most++;
    invalid(`an integer in [1, ${most}] (the most steps \`enhance.noiseLevel\` ${noiseLevel} allows)`, 'enhance.steps', steps);
  }
  return { noiseLevel, steps };
}

/** Applies defaults from the manifest and validates everything. */
export function resolveGenerateOptions(input: GenerateOptions, d: StageDefaults, modelKey: string): ResolvedGenerateOptions {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) invalid('an options object', 'options', input);
  checkKeys(input, RUN_OPTION_KEYS, '');
  if (typeof input.prompt !== 'string' || input.prompt.trim().length === 0) invalid('a non-empty string', 'prompt', input.prompt);
  const prompt = stringOption(input.prompt, 'prompt', '');
  const negativePrompt = stringOption(input.negativePrompt, 'negativePrompt', '');
  const numFrames = intOption(input.numFrames, 'numFrames', 80, 1, 1_000_000);
  const seed = intOption(input.seed, 'seed', 33, 0, Number.MAX_SAFE_INTEGER);
  const s1 = objectOption(input.stage1, 'stage1');
  checkKeys(s1, ['steps', 'guidance'], 'stage1.');
  const s2 = objectOption(input.stage2, 'stage2');
  checkKeys(s2, ['steps', 'guidance', 'eta', 'replaceOverlap', 'cutRetries'], 'stage2.');
  const stage1 = { steps: intOption(s1.steps, 'stage1.steps', d.stage1.steps, 1, 1000), guidance: numberOption(s1.guidance, 'stage1.guidance', d.stage1.guidance, 0, 100) };
  const stage2 = {
    steps: intOption(s2.steps, 'stage2.steps', d.stage2.steps, 1, 1000),
    guidance: numberOption(s2.guidance, 'stage2.guidance', d.stage2.guidance, 0, 100),
    eta: numberOption(s2.eta, 'stage2.eta', d.stage2.eta, 0, 1),
    replaceOverlap: numberOption(s2.replaceOverlap, 'stage2.replaceOverlap', d.stage2.replaceOverlap, 0, 1),
    cutRetries: intOption(s2.cutRetries, 'stage2.cutRetries', d.stage2.cutRetries, 0, MAX_CUT_RETRIES),
  };
  let enhance: ResolvedGenerateOptions['enhance'] = false;
  const raw = input.enhance === undefined ? true : input.enhance; // null is an error, not "default"
  if (raw !== false) {
    if (raw !== true && (raw === null || typeof raw !== 'object' || Array.isArray(raw))) invalid('a boolean or an options object', 'enhance', raw);
    const e = raw === true ? {} : (raw as Record<string, unknown>);
    checkKeys(e, ENHANCE_KEYS, 'enhance.');
    const chunkFrames = intOption(e.chunkFrames, 'enhance.chunkFrames', d.stage3.chunk, 1, 4096);
    const overlapFrames = intOption(e.overlapFrames, 'enhance.overlapFrames', Math.min(d.stage3.overlap, chunkFrames - 1), 0, 4095);
    if (overlapFrames >= chunkFrames) invalid(`an integer in [0, ${chunkFrames - 1}] (less than \`enhance.chunkFrames\`)`, 'enhance.overlapFrames', overlapFrames);
    const layout = e.layout ?? 'pad';
    if (layout !== 'pad' && layout !== 'crop') invalid("'pad' or 'crop'", 'enhance.layout', layout);
    const schedule = checkEnhanceSchedule(d, e);
    enhance = {
      steps: schedule.steps,
      guidance: numberOption(e.guidance, 'enhance.guidance', d.stage3.guidance, 0, 100),
      rescale: numberOption(e.rescale, 'enhance.rescale', d.stage3.rescale, 0, 1),
      noiseLevel: schedule.noiseLevel,
      chunkFrames,
      overlapFrames,
      layout: layout as EnhanceLayout,
      negativePrompt: stringOption(e.negativePrompt, 'enhance.negativePrompt', ''),
      positiveSuffix: stringOption(e.positiveSuffix, 'enhance.positiveSuffix', ''),
      size: d.stage3.size,
      encodeBatch: intOption(e.encodeBatch, 'enhance.encodeBatch', 8, 1, 4096),
      decodeBatch: intOption(e.decodeBatch, 'enhance.decodeBatch', 8, 1, 4096),
    };
  }
  if (input.stateDir !== undefined && (typeof input.stateDir !== 'string' || input.stateDir.length === 0)) invalid('a directory path', 'stateDir', input.stateDir);
  if (input.signal !== undefined && !(input.signal instanceof AbortSignal)) invalid('an AbortSignal', 'signal', input.signal);
  if (input.onProgress !== undefined && typeof input.onProgress !== 'function') invalid('a function', 'onProgress', input.onProgress);
  if (input.onWarning !== undefined && typeof input.onWarning !== 'function') invalid('a function', 'onWarning', input.onWarning);
  // What the stage-1/2 frames depend on: a resumed run may change the enhancement settings.
  const identity = { prompt, negativePrompt, numFrames, seed, stage1, stage2 };
  return { prompt, negativePrompt, numFrames, seed, stage1, stage2, enhance, stateDir: input.stateDir, signal: input.signal, onProgress: input.onProgress, onWarning: input.onWarning, identity, modelKey };
}
