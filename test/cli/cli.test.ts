// The `streamingt2v` command line, run as a real process (node dist/bin/streamingt2v.js) on the tiny
// model with real ffmpeg/ffprobe: help, usage errors (exit 2), info, a real generate (exit 0),
// --no-enhance, Ctrl-C (exit 130, playable partial MP4, no ffmpeg left behind), missing ffmpeg (exit 1).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { cudaAvailable, torchInfo } from '../../lib/index.js';

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'bin', 'streamingt2v.js');
const hasFfprobe = spawnSync('ffprobe', ['-version']).status === 0;
const hasFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0;
const hasProc = existsSync('/proc/self/cmdline');
// One libtorch thread: on a busy 2-core machine OpenMP spinning makes 2 threads ~10x slower.
const FAST = ['--steps1', '2', '--steps2', '2', '--steps3', '2', '--threads', '1'];

let work: string;

/** Newest modification time (ms) of the TypeScript sources the CLI is built from. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

beforeAll(() => {
  const sources = Math.max(newestSource(join(ROOT, 'lib')), newestSource(join(ROOT, 'bin')), statSync(join(ROOT, 'tsconfig.json')).mtimeMs);
  if (!existsSync(CLI) || statSync(CLI).mtimeMs < sources) {
    const build = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8', timeout: 180_000 });
    expect(build.status, `npm run build failed:\n${build.stdout}\n${build.stderr}`).toBe(0);
  }
  work = mkdtempSync(join(tmpdir(), 'st2v-cli-'));
}, 200_000);
afterAll(() => {
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion. */
function cli(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 50_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

interface Probe {
  frames: number;
  width: number;
  height: number;
}

/** Decodes every frame with ffprobe; undefined when the file cannot be read. */
function probe(path: string): Probe | undefined {
  const r = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames,width,height', '-of', 'json', path], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const s = (JSON.parse(r.stdout) as { streams?: { nb_read_frames?: string; width?: number; height?: number }[] }).streams?.[0];
  if (s === undefined) return undefined;
  return { frames: Number(s.nb_read_frames), width: s.width ?? 0, height: s.height ?? 0 };
}

/** Child pids of `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (text !== '') out.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // the process is gone
  }
  return out;
}

/** True while `pid` exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).charAt(0) !== 'Z';
  } catch {
    return false;
  }
}

/** Live processes whose command line mentions `needle` (e.g. an ffmpeg writing our file, reparented or not). */
function processesMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle) && alive(Number(entry))) out.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

describe('help and usage errors', () => {
  it('--help exits 0 and documents every flag the parser accepts', async () => {
    const r = await cli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('streamingt2v generate "<prompt>" [options]');
    expect(r.stdout).toContain('streamingt2v info');
    // every option of the generate parser (read from the source, so a new flag must be documented)
    const source = readFileSync(join(ROOT, 'bin', 'streamingt2v.ts'), 'utf8');
    const block = /options: \{\n([\s\S]*?)\n {4}\},\n {2}\}\);/.exec(source)?.[1];
    expect(block).toBeDefined();
    const flags = [...block!.matchAll(/^\s+'?([\w-]+)'?: \{ type: '(?:string|boolean)'(?:, short: '(\w)')?/gm)].map((m) => ({ long: m[1]!, short: m[2] }));
    expect(flags.map((f) => f.long)).toEqual([
      'frames', 'out', 'preview-out', 'png', 'model', 'device', 'seed', 'negative', 'no-enhance', 'steps1', 'steps2', 'steps3',
      'guidance1', 'guidance2', 'guidance3', 'replace-overlap', 'cut-retries', 'chunk', 'overlap', 'layout', 'state', 'fps', 'threads', 'dtype', 'vram-budget', 'ffmpeg', 'quiet',
    ]);
    for (const f of flags) {
      expect(r.stdout).toMatch(new RegExp(`--${f.long}(?![\\w-])`));
      if (f.short !== undefined) expect(r.stdout).toContain(`-${f.short}`);
    }
    // -h and `generate --help` too
    const h = await cli(['generate', '--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toBe(r.stdout);
    expect((await cli(['-h'])).code).toBe(0);
  });

  it('no arguments: exit 2, the usage on stderr', async () => {
    const r = await cli([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('Usage:');
  });

  const usage: [string, string[], RegExp][] = [
    ['an unknown flag', ['generate', 'a cat', '--out', 'OUT/x.mp4', '--bogus'], /Unknown option '--bogus'/],
    ['an unknown command', ['frobnicate'], /unknown command "frobnicate" \(try --help\)/],
    ['generate without a prompt', ['generate', '--out', 'OUT/x.mp4'], /generate expects exactly one prompt/],
    ['generate with two prompts', ['generate', 'a cat', 'a dog', '--out', 'OUT/x.mp4'], /generate expects exactly one prompt/],
    ['generate without an output', ['generate', 'a cat'], /generate needs somewhere to write: --out file\.mp4/],
    ['--frames abc', ['generate', 'a cat', '--frames', 'abc', '--out', 'OUT/x.mp4'], /--frames expects an integer, got "abc"/],
    ['--frames -5 (taken for a flag)', ['generate', 'a cat', '--frames', '-5', '--out', 'OUT/x.mp4'], /Option '--frames' argument is ambiguous/],
    ['--frames=-5', ['generate', 'a cat', '--frames=-5', '--out', 'OUT/x.mp4'], /ERR_INVALID_ARG: Expected an integer in \[1, 1000000\] for `numFrames` but received -5 of type number \(flag --frames\)/],
    ['--frames 0', ['generate', 'a cat', '--frames', '0', '--out', 'OUT/x.mp4'], /for `numFrames` but received 0 of type number \(flag --frames\)/],
    ['--frames 2.5', ['generate', 'a cat', '--frames', '2.5', '--out', 'OUT/x.mp4'], /--frames expects an integer, got "2\.5"/],
    ['--frames 0x10 (not decimal)', ['generate', 'a cat', '--frames', '0x10', '--out', 'OUT/x.mp4'], /--frames expects an integer, got "0x10"/],
    ['--frames without a value', ['generate', 'a cat', '--out', 'OUT/x.mp4', '--frames'], /Option '-n, --frames <value>' argument missing/],
    ['--guidance1 nan', ['generate', 'a cat', '--guidance1', 'nan', '--out', 'OUT/x.mp4'], /--guidance1 expects a number, got "nan"/],
    ['--steps2 0', ['generate', 'a cat', '--steps2', '0', '--out', 'OUT/x.mp4'], /for `stage2\.steps` but received 0 of type number \(flag --steps2\)/],
    ['--replace-overlap 1.5', ['generate', 'a cat', '--replace-overlap', '1.5', '--out', 'OUT/x.mp4'], /Expected a number in \[0, 1\] for `stage2\.replaceOverlap` but received 1\.5 of type number \(flag --replace-overlap\)/],
    ['--cut-retries 11', ['generate', 'a cat', '--cut-retries', '11', '--out', 'OUT/x.mp4'], /Expected an integer in \[0, 10\] for `stage2\.cutRetries` but received 11 of type number \(flag --cut-retries\)/],
    ['--cut-retries 1.5', ['generate', 'a cat', '--cut-retries', '1.5', '--out', 'OUT/x.mp4'], /--cut-retries expects an integer, got "1\.5"/],
    ['--replace-overlap on', ['generate', 'a cat', '--replace-overlap', 'on', '--out', 'OUT/x.mp4'], /--replace-overlap expects a number, got "on"/],
    ['--layout stretch', ['generate', 'a cat', '--layout', 'stretch', '--out', 'OUT/x.mp4'], /Expected 'pad' or 'crop' for `enhance\.layout` but received "stretch" \(flag --layout\)/],
    ['--overlap ≥ --chunk', ['generate', 'a cat', '--chunk', '8', '--overlap', '8', '--out', 'OUT/x.mp4'], /for `enhance\.overlapFrames` but received 8 of type number \(flag --overlap\)/],
    ['--fps 0', ['generate', 'a cat', '--fps', '0', '--out', 'OUT/x.mp4'], /for `fps` but received 0 of type number \(flag --fps\)/],
    ['--no-enhance with --steps3', ['generate', 'a cat', '--no-enhance', '--steps3', '2', '--out', 'OUT/x.mp4'], /--no-enhance conflicts with --steps3 \(stage-3 settings\)/],
    ['a whitespace prompt', ['generate', '   ', '--out', 'OUT/x.mp4'], /Expected a non-empty string for `prompt` but received "   " \(the prompt argument\)/],
    ['--threads 0', ['generate', 'a cat', '--threads', '0', '--out', 'OUT/x.mp4'], /for `threads` but received 0 of type number \(flag --threads\)/],
    ['--dtype float16 on the CPU', ['generate', 'a cat', '--device', 'cpu', '--dtype', 'float16', '--out', 'OUT/x.mp4'], /Expected 'float32' or 'bfloat16' on the CPU .* for `dtype` but received "float16" \(flag --dtype\)/],
    ['--dtype int8', ['generate', 'a cat', '--dtype', 'int8', '--out', 'OUT/x.mp4'], /Expected one of float32, float16, bfloat16, float64 for `dtype` but received "int8" \(flag --dtype\)/],
    ['--vram-budget abc', ['generate', 'a cat', '--vram-budget', 'abc', '--out', 'OUT/x.mp4'], /--vram-budget expects a number, got "abc"/],
    ['--vram-budget 0.0000001 (under the minimum)', ['generate', 'a cat', '--vram-budget', '0.0000001', '--out', 'OUT/x.mp4'], /for `vramBudget` but received 107 .*\(flag --vram-budget\)/],
  ];
  it.each(usage)('%s: exit 2 with a message, nothing written', async (_title, args, message) => {
    const out = mkdtempSync(join(work, 'usage-'));
    const r = await cli(args.map((a) => a.replace('OUT', out)));
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^streamingt2v: /);
    expect(r.stderr).toMatch(message);
    expect(readdirSync(out)).toEqual([]);
  });

  it.skipIf(cudaAvailable())('--device cuda without CUDA: exit 2 naming --device', async () => {
    const out = mkdtempSync(join(work, 'usage-'));
    const r = await cli(['generate', 'a cat', '--device', 'cuda', '--out', join(out, 'x.mp4')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('ERR_INVALID_ARG: Expected an available device for `device` but received "cuda"');
    expect(r.stderr).toContain('(flag --device)');
    expect(readdirSync(out)).toEqual([]);
  });
});

describe('info', () => {
  it('exits 0 and prints the libtorch version and CUDA status', async () => {
    const r = await cli(['info']);
    expect(r.code).toBe(0);
    const first = r.stdout.split('\n')[0]!;
    expect(first).toMatch(/^libtorch \d+\.\d+\.\d+/);
    expect(first.startsWith(`libtorch ${torchInfo().torch} `)).toBe(true);
    expect(first).toContain(`CUDA available: ${cudaAvailable()}`);
    expect(r.stdout).toContain('ATen/Parallel');
  });
});

describe('missing ffmpeg', () => {
  it('--ffmpeg /nonexistent: exit 1 with ERR_FFMPEG_NOT_FOUND, before any model work, nothing written', async () => {
    const out = mkdtempSync(join(work, 'noffmpeg-'));
    const started = performance.now();
    const r = await cli(['generate', 'a cat', '--frames', '20', ...FAST, '--out', join(out, 'x.mp4'), '--ffmpeg', '/nonexistent/ffmpeg']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^streamingt2v: ERR_FFMPEG_NOT_FOUND: /);
    expect(r.stderr).toContain('/nonexistent/ffmpeg');
    expect(r.stderr).not.toContain('stage 1'); // no progress: it failed before generating
    expect(readdirSync(out)).toEqual([]);
    expect(performance.now() - started).toBeLessThan(30_000);
  });
});

describe.skipIf(!hasFfmpeg)('real runs on the tiny model', () => {
  it.skipIf(!hasFfprobe)('generate --frames 20: exit 0, prints the files, 20 frames in x.mp4 (128²) and x.preview.mp4 (64²)', async () => {
    const out = join(work, 'gen');
    const file = join(out, 'x.mp4');
    const r = await cli(['generate', 'a red circle bouncing', '--frames', '20', ...FAST, '--out', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^wrote ${file}, ${join(out, 'x.preview.mp4')}: 20 preview frames, 20 final frames on cpu in \\d+\\.\\d s\\n$`));
    expect(r.stderr).toContain('100% stage 3');
    if (existsSync(join(ROOT, 'models', 'default', 'manifest.json'))) {
      // the embedded model's closed vocabulary: one line before the run (and none under -q, below)
      expect(r.stderr).toMatch(/^warning: The model "default" was trained on a closed vocabulary and never saw the word "bouncing": it still generates/);
    }
    expect(readdirSync(out).sort()).toEqual(['x.mp4', 'x.preview.mp4']);
    expect(probe(file)).toEqual({ frames: 20, width: 128, height: 128 });
    expect(probe(join(out, 'x.preview.mp4'))).toEqual({ frames: 20, width: 64, height: 64 });
  });

  it.skipIf(!hasFfprobe)('--no-enhance writes only the preview (to --out), quietly with -q', async () => {
    const out = join(work, 'noenh');
    const file = join(out, 'p.mp4');
    const r = await cli(['generate', 'a red circle bouncing', '-n', '20', '--steps1', '2', '--steps2', '2', '--threads', '1', '--no-enhance', '-q', '-o', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^wrote ${file}: 20 preview frames, 0 final frames on cpu in \\d+\\.\\d s\\n$`));
    expect(r.stderr).toBe('');
    expect(readdirSync(out)).toEqual(['p.mp4']);
    expect(probe(file)).toEqual({ frames: 20, width: 64, height: 64 });
  });

  it.skipIf(!hasFfprobe)('--vram-budget prints the memory plan after the run (and -q silences it)', async () => {
    const out = join(work, 'vram');
    const file = join(out, 'p.mp4');
    const r = await cli(['generate', 'a red circle bouncing', '-n', '16', '--steps1', '2', '--threads', '1', '--no-enhance', '--vram-budget', '0.5', '-o', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/vramBudget 512\.0 MiB: all components resident; estimated peak .* \(the smallest workable budget is .*\)\n {2}stage1: CFG batched;/);
    const q = await cli(['generate', 'a red circle bouncing', '-n', '16', '--steps1', '2', '--threads', '1', '--no-enhance', '--vram-budget', '0.5', '-q', '-o', file]);
    expect(q.code, q.stderr).toBe(0);
    expect(q.stderr).toBe('');
  });

  it.skipIf(!hasFfprobe)('without ffprobe these checks are skipped', () => {
    expect(hasFfprobe).toBe(true);
  });

  /**
   * Starts a long run, waits for its first progress line (stage 1 done: its frames are already in
   * the preview MP4, so ffmpeg is running), sends SIGINT and returns what happened.
   */
  async function interrupt(name: string, group: boolean): Promise<{ r: Run; file: string; preview: string; ffmpegs: { pid: number; argv: string[] }[] }> {
    const out = join(work, name);
    const file = join(out, 'int.mp4');
    const preview = join(out, 'int.preview.mp4');
    const args = [CLI, 'generate', 'a red circle bouncing', '--frames', '1200', '--steps1', '1', '--steps2', '2', '--steps3', '1', '--threads', '1', '--out', file];
    // detached: its own process group, so -pid reaches node and ffmpeg as a terminal's Ctrl-C does
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: group });
    const pid = child.pid!;
    let stdout = '';
    let stderr = '';
    let ffmpegs: { pid: number; argv: string[] }[] = [];
    const killer = setTimeout(() => (group ? process.kill(-pid, 'SIGKILL') : child.kill('SIGKILL')), 45_000);
    const done = new Promise<Run>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    let sent = false;
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (!sent && /\] +\d+% stage 1 /.test(stderr)) {
        sent = true;
        ffmpegs = childrenOf(pid).map((p) => {
          try {
            return { pid: p, argv: readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0') };
          } catch {
            return { pid: p, argv: [] };
          }
        });
        if (group) process.kill(-pid, 'SIGINT');
        else child.kill('SIGINT');
      }
    });
    const r = await done;
    clearTimeout(killer);
    return { r, file, preview, ffmpegs };
  }

  it.skipIf(!hasFfprobe || !hasProc)('SIGINT to the CLI process during stage 2: exit 130, a playable partial preview, no ffmpeg left', async () => {
    const { r, file, preview, ffmpegs } = await interrupt('int-pid', false);
    expect(r.signal).toBeNull();
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain('stopping after the current network call');
    expect(r.stderr).toContain(`interrupted: partial output kept (${file})`);
    expect(r.stdout).toBe('');
    // when the signal came, the preview's ffmpeg was a child of the CLI ...
    expect(ffmpegs.length).toBe(1);
    expect(ffmpegs[0]!.argv).toContain(preview);
    // ... and now it is gone (not orphaned), and nothing else writes the file
    expect(alive(ffmpegs[0]!.pid)).toBe(false);
    expect(processesMentioning(preview)).toEqual([]);
    // the partial preview plays: at least stage 1's 16 frames (written before the progress line), far fewer than 1200
    const p = probe(preview);
    expect(p).toBeDefined();
    expect(p!.frames).toBeGreaterThanOrEqual(16);
    expect(p!.frames).toBeLessThan(1200);
    expect([p!.width, p!.height]).toEqual([64, 64]);
    // no final frame existed yet, so no final MP4
    expect(existsSync(file)).toBe(false);
  });

  it.skipIf(!hasProc)('SIGINT to the whole process group (Ctrl-C in a terminal): exit 130, no ffmpeg left', async () => {
    const { r, file, preview, ffmpegs } = await interrupt('int-group', true);
    expect(r.signal).toBeNull();
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain(`interrupted: partial output kept (${file})`);
    expect(ffmpegs.length).toBe(1);
    expect(alive(ffmpegs[0]!.pid)).toBe(false);
    expect(processesMentioning(preview)).toEqual([]);
    // ffmpeg runs in its own process group (detached), so the terminal's SIGINT does not reach it: the CLI
    // closes its input and every frame handed over (stage 1's 16 at least) is in the playable partial file.
    if (hasFfprobe) {
      const p = probe(preview);
      expect(p).toBeDefined();
      expect(p!.frames).toBeGreaterThanOrEqual(16);
      expect(p!.frames).toBeLessThan(1200);
    }
  });
});
