#!/usr/bin/env node
/**
 * The `streamingt2v` command line.
 *
 *   streamingt2v generate "prompt" --frames N --out file.mp4 [options]
 *   streamingt2v info
 *
 * Exit codes: 0 done, 1 failed, 2 bad usage, 130 interrupted (Ctrl-C; the partial output is kept).
 */
import { parseArgs } from 'node:util';

import { cudaAvailable, torchInfo } from '../lib/device.js';
import { isStreamingT2VError } from '../lib/errors.js';
import { generateLongVideo, type LongVideoOptions } from '../lib/pipeline/long-video.js';
import type { ProgressEvent, StreamingT2VWarning } from '../lib/pipeline/types.js';

const HELP = `streamingt2v — long text-to-video generation (StreamingT2V) on libtorch

Usage:
  streamingt2v generate "<prompt>" [options]
  streamingt2v info
  streamingt2v --help

generate options:
  --frames, -n <N>        number of frames (default 80; any length, 1200+ included)
  --out, -o <file.mp4>    output video (the enhanced one; the preview goes to <file>.preview.mp4)
  --preview-out <file>    where to write the stage-2 preview MP4
  --png <dir>             also write PNG frames to <dir>/preview and <dir>/final
  --model <dir>           model directory (default: the model embedded in the package)
  --device <d>            auto | cpu | cuda | cuda:N (default auto)
  --seed <N>              seed (default 33)
  --negative <text>       negative prompt (default "")
  --no-enhance            skip stage 3 (write the 256² preview only)
  --steps1/--steps2/--steps3 <N>   sampler steps per stage (defaults from the model)
  --guidance1/--guidance2/--guidance3 <w>   CFG scales per stage (defaults from the model)
  --replace-overlap <s>   share of stage-2 steps that denoise each window beside the previous
                          frames' own latents, 0..1 (not in the paper; default from the model)
  --cut-retries <N>       sample a stage-2 window again, up to N times, when its seam looks like
                          a scene cut, 0..10 (not in the paper; default from the model)
  --chunk <N> --overlap <N>        stage-3 chunk and overlap frames (defaults 24 / 8)
  --layout <pad|crop>     stage-3 framing: letterbox to 16:9 (pad, official) or square (crop)
  --state <dir>           persist the run after every window; rerun the same command to resume
  --fps <N>               output frame rate (default from the model, 8)
  --threads <N>           CPU threads (default: all cores)
  --dtype <t>             float32 | float16 | bfloat16 for every network (default: the model's
                          precision on CUDA, float32 on the CPU)
  --vram-budget <GiB>     plan device memory for this budget (CFG split, offloading, VAE batch);
                          prints the plan at the end unless --quiet
  --ffmpeg <path>         ffmpeg binary (default: $STREAMINGT2V_FFMPEG or ffmpeg on PATH)
  --quiet, -q             no progress output and no warnings (errors only)

Ctrl-C stops after the current network call and keeps what was written.`;

class UsageError extends Error {}

/** The flag behind each library option, to name it in validation errors. */
const FLAG_OF: Readonly<Record<string, string>> = {
  numFrames: '--frames',
  output: '--out',
  previewOutput: '--preview-out',
  pngDir: '--png',
  modelDir: '--model',
  device: '--device',
  seed: '--seed',
  negativePrompt: '--negative',
  'stage1.steps': '--steps1',
  'stage2.steps': '--steps2',
  'enhance.steps': '--steps3',
  'stage1.guidance': '--guidance1',
  'stage2.guidance': '--guidance2',
  'stage2.replaceOverlap': '--replace-overlap',
  'stage2.cutRetries': '--cut-retries',
  'enhance.guidance': '--guidance3',
  'enhance.chunkFrames': '--chunk',
  'enhance.overlapFrames': '--overlap',
  'enhance.layout': '--layout',
  stateDir: '--state',
  fps: '--fps',
  threads: '--threads',
  dtype: '--dtype',
  vramBudget: '--vram-budget',
  ffmpegPath: '--ffmpeg',
  prompt: 'the prompt argument',
};

/** Drops undefined fields (options objects reject explicit undefined keys nowhere, but stay tidy). */
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function num(value: string | undefined, name: string, integer = true): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  // Decimal only: Number() alone would also take '', '0x10', '1e3' or ' 7 '.
  const shape = integer ? /^[+-]?\d+$/ : /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
  if (!shape.test(value) || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new UsageError(`--${name} expects ${integer ? 'an integer' : 'a number'}, got "${value}"`);
  return n;
}

/** GiB (a decimal number) to whole bytes; undefined stays undefined (the library validates the result). */
function gibToBytes(gib: number | undefined): number | undefined {
  return gib === undefined ? undefined : Math.floor(gib * 2 ** 30);
}

function bar(e: ProgressEvent): string {
  const width = 24;
  const filled = Math.round(e.fraction * width);
  const eta = e.etaMs === undefined ? '' : ` ETA ${Math.ceil(e.etaMs / 1000)}s`;
  const where =
    e.phase === 'stage1'
      ? 'stage 1'
      : e.phase === 'stage2'
        ? `stage 2 window ${e.window ?? 0}/${e.windows}`
        : e.phase === 'stage3'
          ? 'stage 3'
          : e.phase === 'stage3-encode'
            ? 'stage 3 encode'
            : 'stage 3 decode';
  const step = e.step !== undefined && e.steps !== undefined ? ` step ${e.step + (e.phase.startsWith('stage3-') ? 0 : 1)}/${e.steps}` : '';
  const retry = e.attempt === undefined ? '' : ` cut-guard retry ${e.attempt}`;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(e.fraction * 100).toFixed(0).padStart(3)}% ${where}${retry}${step} frames ${e.framesDone}/${e.totalFrames}${e.finalFramesDone > 0 ? ` final ${e.finalFramesDone}` : ''}${eta}`;
}

/** The line that reports a cut-guard retry (on its first step event; a handover retry starts with stage 1). */
function retryLine(e: ProgressEvent): string {
  const window = e.phase === 'stage1' ? 1 : (e.window ?? 0);
  const again = e.phase === 'stage1' ? ' (stage 1 and window 1 again)' : '';
  return `cut guard: window ${window}'s first frame looked like a scene cut (seam content ${e.seam!.content.toFixed(1)}, ratio ${e.seam!.ratio.toFixed(2)}): retry ${e.attempt}${again}`;
}

async function generate(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      frames: { type: 'string', short: 'n' },
      out: { type: 'string', short: 'o' },
      'preview-out': { type: 'string' },
      png: { type: 'string' },
      model: { type: 'string' },
      device: { type: 'string' },
      seed: { type: 'string' },
      negative: { type: 'string' },
      'no-enhance': { type: 'boolean' },
      steps1: { type: 'string' },
      steps2: { type: 'string' },
      steps3: { type: 'string' },
      guidance1: { type: 'string' },
      guidance2: { type: 'string' },
      guidance3: { type: 'string' },
      'replace-overlap': { type: 'string' },
      'cut-retries': { type: 'string' },
      chunk: { type: 'string' },
      overlap: { type: 'string' },
      layout: { type: 'string' },
      state: { type: 'string' },
      fps: { type: 'string' },
      threads: { type: 'string' },
      dtype: { type: 'string' },
      'vram-budget': { type: 'string' },
      ffmpeg: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
    },
  });
  if (positionals.length !== 1) throw new UsageError('generate expects exactly one prompt (quote it)');
  if (values.out === undefined && values['preview-out'] === undefined && values.png === undefined) {
    throw new UsageError('generate needs somewhere to write: --out file.mp4 (or --preview-out / --png)');
  }
  if (values['no-enhance'] === true) {
    const stage3 = (['steps3', 'guidance3', 'chunk', 'overlap', 'layout'] as const).filter((k) => values[k] !== undefined);
    if (stage3.length > 0) throw new UsageError(`--no-enhance conflicts with ${stage3.map((k) => `--${k}`).join(', ')} (stage-3 settings)`);
  }
  const enhance =
    values['no-enhance'] === true
      ? false
      : defined({
          steps: num(values.steps3, 'steps3'),
          guidance: num(values.guidance3, 'guidance3', false),
          chunkFrames: num(values.chunk, 'chunk'),
          overlapFrames: num(values.overlap, 'overlap'),
          layout: values.layout as 'pad' | 'crop' | undefined,
        });
  const controller = new AbortController();
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('\nstopping after the current network call (Ctrl-C again to quit at once)...\n');
    controller.abort(new Error('interrupted'));
  };
  process.on('SIGINT', onSigint);
  const tty = process.stderr.isTTY === true;
  let lastLine = '';
  const stage = (steps: string | undefined, guidance: string | undefined, n: string) =>
    steps === undefined && guidance === undefined ? undefined : defined({ steps: num(steps, `steps${n}`), guidance: num(guidance, `guidance${n}`, false) });
  const replaceOverlap = num(values['replace-overlap'], 'replace-overlap', false);
  const cutRetries = num(values['cut-retries'], 'cut-retries');
  const stage2Extra = defined({ replaceOverlap, cutRetries });
  const stage2 = Object.keys(stage2Extra).length === 0 ? stage(values.steps2, values.guidance2, '2') : { ...stage(values.steps2, values.guidance2, '2'), ...stage2Extra };
  const options = defined({
    prompt: positionals[0]!,
    numFrames: num(values.frames, 'frames'),
    output: values.out,
    previewOutput: values['preview-out'],
    pngDir: values.png,
    modelDir: values.model,
    device: values.device,
    seed: num(values.seed, 'seed'),
    negativePrompt: values.negative,
    enhance,
    stage1: stage(values.steps1, values.guidance1, '1'),
    stage2,
    stateDir: values.state,
    fps: num(values.fps, 'fps', false),
    threads: num(values.threads, 'threads'),
    dtype: values.dtype as LongVideoOptions['dtype'],
    vramBudget: gibToBytes(num(values['vram-budget'], 'vram-budget', false)),
    ffmpegPath: values.ffmpeg,
    signal: controller.signal,
    // a line of its own before the run (e.g. prompt words the embedded model never saw); -q: errors only
    onWarning: (w: StreamingT2VWarning) => {
      if (values.quiet !== true) process.stderr.write(`warning: ${w.message}\n`);
    },
    onProgress:
      values.quiet === true
        ? undefined
        : (e: ProgressEvent) => {
            const line = bar(e);
            if (tty) process.stderr.write(`\r${line.padEnd(lastLine.length)}`);
            else if (e.step === undefined || e.phase === 'stage3') process.stderr.write(`${line}\n`);
            // a cut-guard retry gets a line of its own (in a terminal too: the bar line is overwritten)
            if (e.seam !== undefined) process.stderr.write(`${tty ? '\n' : ''}${retryLine(e)}\n`);
            lastLine = line;
          },
  }) as LongVideoOptions;
  try {
    const result = await generateLongVideo(options);
    if (tty && values.quiet !== true) process.stderr.write('\n');
    if (result.memoryPlan !== undefined && values.quiet !== true) process.stderr.write(`${result.memoryPlan}\n`);
    process.stdout.write(
      `wrote ${result.files.join(', ') || '(no files)'}: ${result.frames.preview} preview frames, ${result.frames.final} final frames on ${result.device} in ${result.seconds.toFixed(1)} s\n`,
    );
    return 0;
  } catch (error) {
    if (tty) process.stderr.write('\n');
    if (interrupted) {
      process.stderr.write(`interrupted: partial output kept${options.output ? ` (${options.output})` : ''}${options.stateDir ? `; rerun the same command to resume from ${options.stateDir}` : ''}\n`);
      return 130;
    }
    throw error;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

function info(): number {
  const i = torchInfo();
  process.stdout.write(`libtorch ${i.torch} (${i.torchSource}); CUDA build: ${i.cudaBuild}; CUDA available: ${cudaAvailable()}\n${i.parallelInfo}`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    (command === undefined ? process.stderr : process.stdout).write(`${HELP}\n`);
    return command === undefined ? 2 : 0;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (command === 'generate') return generate(rest);
  if (command === 'info') return info();
  throw new UsageError(`unknown command "${command}" (try --help)`);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError || (error as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || (error as { code?: string }).code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      process.stderr.write(`streamingt2v: ${(error as Error).message}\n`);
      process.exit(2);
    }
    if (isStreamingT2VError(error)) {
      const option = error.code === 'ERR_INVALID_ARG' ? /for `([\w.]+)`/.exec(error.message)?.[1] : undefined;
      const flag = option === undefined ? undefined : FLAG_OF[option];
      const where = flag === undefined ? '' : flag.startsWith('--') ? ` (flag ${flag})` : ` (${flag})`;
      process.stderr.write(`streamingt2v: ${error.code}: ${error.message}${where}\n`);
      process.exit(error.code === 'ERR_INVALID_ARG' ? 2 : 1);
    }
    process.stderr.write(`streamingt2v: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(1);
  },
);
