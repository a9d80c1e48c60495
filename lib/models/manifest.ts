/**
 * The `manifest.json` of a model directory written by `python3 -m models.export` (see `models/manifest.py`):
 * typed view, validation and sha256 verification.
 *
 * @example
 * ```ts
 * const manifest = await readManifest('models/tiny');
 * manifest.components.unet_stage2?.inputs.map((t) => t.name); // ['sample', 'timestep', 'encoder_hidden_states', 'cond_frames']
 * manifest.schedulers.stage2.timestepSpacing;                  // 'leading'
 * resolveShape(['B', 4, 'F', 'h', 'w'], { B: 2, F: 16, h: 8, w: 8 }); // [2, 4, 16, 8, 8]
 * ```
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, normalize, resolve, sep } from 'node:path';

import type { DType } from '../binding.js';
import { InvalidArgumentError, ModelLoadError } from '../errors.js';
import { ddimConfigFromDiffusers, dpmSolverConfigFromDiffusers, logSnrCosineInterpConfig } from '../schedulers/config.js';
import { ManifestError, ManifestVersionError } from './manifest-error.js';
import { MANIFEST_FILE, MANIFEST_FORMAT, SUPPORTED_MANIFEST_VERSION, COMPONENT_ROLES, MAX_CUT_RETRIES } from './manifest-types.js';
import type { ComponentRole, TextEncoderRole, SymbolicDim, TensorSpec, ComponentEntry, TokenizerEntry, ManifestSchedulers, Stage1Defaults, Stage2Defaults, Stage3Defaults, ManifestDefaults, ManifestSource, ModelManifest, ReadManifestOptions } from './manifest-types.js';

export { MANIFEST_FILE, MANIFEST_FORMAT, SUPPORTED_MANIFEST_VERSION, COMPONENT_ROLES } from './manifest-types.js';
export type { ComponentRole, TextEncoderRole, SymbolicDim, TensorSpec, ComponentEntry, TokenizerEntry, ManifestSchedulers, Stage1Defaults, Stage2Defaults, Stage3Defaults, ManifestDefaults, ManifestSource, ModelManifest, ReadManifestOptions } from './manifest-types.js';

const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16', 'float64', 'uint8', 'int32', 'int64', 'bool'];
const DIM = /^(?:(\d+)\*)?([A-Za-z_]\w*)(?:\/(\d+))?$/;

/** Resolves one symbolic dim against `dims` (`'H/8'` with H = 64 → 8). Throws {@link InvalidArgumentError}. */
export function resolveDim(dim: SymbolicDim, dims: Readonly<Record<string, number>>): number {
  if (typeof dim === 'number') return dim;
  const m = DIM.exec(dim);
  if (m === null || (m[1] !== undefined && m[3] !== undefined)) throw new InvalidArgumentError(`Bad symbolic dim \`${dim}\``);
  const name = m[2] as string;
  const value = dims[name];
  if (value === undefined) throw new InvalidArgumentError(`No value for dim \`${name}\` (in \`${dim}\`)`);
  if (m[1] !== undefined) return Number(m[1]) * value;
  if (m[3] !== undefined) {
    const k = Number(m[3]);
    if (value % k !== 0) throw new InvalidArgumentError(`\`${dim}\`: ${name} = ${value} is not a multiple of ${k}`);
    return value / k;
  }
  return value;
}

/** Resolves a manifest shape to numbers. */
export function resolveShape(shape: readonly SymbolicDim[], dims: Readonly<Record<string, number>>): number[] {
  return shape.map((d) => resolveDim(d, dims));
}

/** Returns the component of `role`, or throws {@link InvalidArgumentError} when the manifest lacks it. */
export function getComponent(manifest: ModelManifest, role: ComponentRole): ComponentEntry {
  const entry = manifest.components[role];
  if (entry === undefined) throw new InvalidArgumentError(`${manifest.path} has no \`${role}\` component`);
  return entry;
}

/** Streaming sha256 (hex) of a file. */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolvePromise(hash.digest('hex')));
  });
}

type Json = Record<string, unknown>;

/** Field access with error messages naming the manifest and the field path. */
class Fields {
  constructor(
    readonly manifestPath: string,
    readonly obj: Json,
    readonly where: string,
  ) {}
  private fail(key: string, what: string): never {
    throw new ManifestError(
      this.manifestPath,
      `${this.manifestPath}: \`${this.where}${key}\` must be ${what}. Re-export the directory with python3 -m models.export.`,
    );
  }
  raw(key: string): unknown {
    return this.obj[key];
  }
  str(key: string): string {
    const v = this.obj[key];
    return typeof v === 'string' ? v : this.fail(key, 'a string');
  }
  num(key: string): number {
    const v = this.obj[key];
    return typeof v === 'number' && Number.isFinite(v) ? v : this.fail(key, 'a number');
  }
  int(key: string): number {
    const v = this.num(key);
    return Number.isInteger(v) && v >= 0 ? v : this.fail(key, 'a non-negative integer');
  }
  /** An optional integer in [0, max]: `fallback` when the key is absent. */
  optInt(key: string, fallback: number, max: number): number {
    const v = this.obj[key];
    if (v === undefined) return fallback;
    return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max ? v : this.fail(key, `an integer in [0, ${max}]`);
  }
  /** An optional number in [0, 1]: `fallback` when the key is absent. */
  share(key: string, fallback: number): number {
    const v = this.obj[key];
    if (v === undefined) return fallback;
    return typeof v === 'number' && v >= 0 && v <= 1 ? v : this.fail(key, 'a number in [0, 1]');
  }
  dtype(key: string): DType {
    const v = this.obj[key];
    return DTYPES.includes(v as DType) ? (v as DType) : this.fail(key, `one of ${DTYPES.join(', ')}`);
  }
  sub(key: string): Fields {
    const v = this.obj[key];
    if (v === null || typeof v !== 'object' || Array.isArray(v)) this.fail(key, 'an object');
    return new Fields(this.manifestPath, v as Json, `${this.where}${key}.`);
  }
  list(key: string): Fields[] {
    const v = this.obj[key];
    if (!Array.isArray(v)) this.fail(key, 'an array');
    return (v as unknown[]).map((item, i) => {
      if (item === null || typeof item !== 'object' || Array.isArray(item)) this.fail(`${key}[${i}]`, 'an object');
      return new Fields(this.manifestPath, item as Json, `${this.where}${key}[${i}].`);
    });
  }
  /** A relative file name inside the directory (no absolute paths, no `..`). */
  file(key: string): string {
    const v = this.str(key);
    const n = normalize(v);
    if (v.length === 0 || isAbsolute(v) || n.startsWith('..') || n.split(sep).includes('..')) {
      this.fail(key, 'a relative file name inside the model directory');
    }
    return v;
  }
}

function tensorSpecs(f: Fields, key: string): TensorSpec[] {
  return f.list(key).map((t) => {
    const shape = t.raw('shape');
    if (!Array.isArray(shape) || !shape.every((d) => (typeof d === 'number' && Number.isInteger(d) && d >= 0) || (typeof d === 'string' && DIM.test(d)))) {
      throw new ManifestError(f.manifestPath, `${f.manifestPath}: \`${t.where}shape\` must be a list of integers and symbolic dims (B, H/8, 8*h)`);
    }
    return Object.freeze({ name: t.str('name'), shape: Object.freeze([...(shape as SymbolicDim[])]), dtype: t.dtype('dtype'), fixedDtype: t.raw('fixed_dtype') === true });
  });
}

function parseScheduler<T>(f: Fields, stage: string, type: string, parse: (raw: Json) => T): T {
  const s = f.sub(stage);
  if (s.str('type') !== type) {
    throw new ManifestError(f.manifestPath, `${f.manifestPath}: \`schedulers.${stage}.type\` is ${JSON.stringify(s.raw('type'))}, expected \`${type}\``);
  }
  try {
    return parse(s.sub('config').obj);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new ManifestError(f.manifestPath, `${f.manifestPath}: \`schedulers.${stage}.config\` is invalid: ${message}`, { cause: error });
  }
}

function parseDefaults(d: Fields): ManifestDefaults {
  const s1 = d.sub('stage1');
  const s2 = d.sub('stage2');
  const s3 = d.sub('stage3');
  const precision = d.sub('precision');
  return Object.freeze({
    fps: d.num('fps'),
    latentScale: d.num('latent_scale'),
    stage1: Object.freeze({ height: s1.int('height'), width: s1.int('width'), numFrames: s1.int('num_frames'), numInferenceSteps: s1.int('num_inference_steps'), guidanceScale: s1.num('guidance_scale') }),
    stage2: Object.freeze({
      height: s2.int('height'), width: s2.int('width'), windowFrames: s2.int('window_frames'), conditioningFrames: s2.int('conditioning_frames'),
      anchorFrames: s2.int('anchor_frames'), numInferenceSteps: s2.int('num_inference_steps'), guidanceScale: s2.num('guidance_scale'),
      eta: s2.num('eta'), seed: s2.int('seed'), negativePrompt: s2.str('negative_prompt'), replaceOverlap: s2.share('replace_overlap', 0),
      cutRetries: s2.optInt('cut_retries', 0, MAX_CUT_RETRIES),
    }),
    stage3: Object.freeze({
      height: s3.int('height'), width: s3.int('width'), canvasHeight: s3.int('canvas_height'), canvasWidth: s3.int('canvas_width'),
      resizeMode: s3.str('resize_mode'), numInferenceSteps: s3.int('num_inference_steps'), guidanceScale: s3.num('guidance_scale'),
      guidanceRescale: s3.num('guidance_rescale'), noiseLevel: s3.int('noise_level'), startTimestep: s3.int('start_timestep'),
      chunkFrames: s3.int('chunk_frames'), overlapFrames: s3.int('overlap_frames'), solver: s3.str('solver'),
      timestepSpacing: s3.str('timestep_spacing'), predictionType: s3.str('prediction_type'), noiseSeed: s3.int('noise_seed'),
      negativePrompt: s3.str('negative_prompt'), promptSuffix: s3.str('prompt_suffix'),
    }),
    precision: Object.freeze(Object.fromEntries(Object.keys(precision.obj).map((k) => [k, precision.dtype(k)]))),
  });
}

async function checkFile(dir: string, manifestPath: string, files: ModelManifest['files'], file: string, what: string, verifyHashes: boolean): Promise<void> {
  const path = join(dir, file);
  const entry = files[file];
  if (entry === undefined) {
    throw new ManifestError(manifestPath, `${manifestPath}: ${what} file \`${file}\` has no sha256 entry under \`files\`. Re-export the directory with python3 -m models.export.`);
  }
  let size: number;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new Error('not a regular file');
    size = info.size;
  } catch (error) {
    throw new ModelLoadError(path, `${path} (${what}) is listed in ${manifestPath} but missing. Re-download the model directory or re-export it with python3 -m models.export.`, { cause: error });
  }
  const fix = 'The file is truncated, corrupt or from another export: re-download it or re-export the directory with python3 -m models.export';
  if (size !== entry.bytes) {
    throw new ModelLoadError(path, `${path} (${what}) has ${size} bytes, ${manifestPath} says ${entry.bytes}. ${fix}.`);
  }
  if (verifyHashes) {
    const digest = await sha256File(path);
    if (digest !== entry.sha256) {
      throw new ModelLoadError(path, `sha256 of ${path} (${what}) is ${digest}, ${manifestPath} says ${entry.sha256}. ${fix} (or pass verifyHashes: false to skip hashing).`);
    }
  }
}

/**
 * Reads and validates `<dir>/manifest.json`: format and version, roles (known, unique, required present), fields,
 * scheduler configs, defaults, and every listed file (present, size, and sha256 unless `verifyHashes: false`).
 *
 * Throws {@link ModelLoadError} for a missing manifest or a missing/corrupt file, {@link ManifestVersionError}
 * for a newer format version and {@link ManifestError} for anything else; each message names the file and the fix.
 */
export async function readManifest(dir: string, opts: ReadManifestOptions = {}): Promise<ModelManifest> {
  if (typeof dir !== 'string' || dir.length === 0) throw new InvalidArgumentError(`Expected a model directory path but received ${String(dir)}`);
  const root = resolve(dir);
  const path = join(root, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ModelLoadError(path, `No ${MANIFEST_FILE} in ${root}: not a model directory. Export one with \`python3 -m models.export --config tiny --out ${dir}\` (or the full weights, see models/export.py).`, { cause: error });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ManifestError(path, `${path} is not valid JSON (${(error as Error).message}). Re-export the directory with python3 -m models.export.`, { cause: error });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new ManifestError(path, `${path} must hold a JSON object. Re-export the directory with python3 -m models.export.`);
  const f = new Fields(path, json as Json, '');
  if (f.raw('format') !== MANIFEST_FORMAT) {
    throw new ManifestError(path, `${path}: \`format\` is ${JSON.stringify(f.raw('format'))}, expected "${MANIFEST_FORMAT}". Point to a directory written by python3 -m models.export.`);
  }
  const formatVersion = f.int('format_version');
  if (formatVersion > SUPPORTED_MANIFEST_VERSION) throw new ManifestVersionError(path, formatVersion, SUPPORTED_MANIFEST_VERSION);
  if (formatVersion < 1) throw new ManifestError(path, `${path}: format_version ${formatVersion} is not valid (expected 1..${SUPPORTED_MANIFEST_VERSION}).`);

  const filesF = f.sub('files');
  const files: Record<string, { sha256: string; bytes: number }> = {};
  for (const name of Object.keys(filesF.obj)) {
    const e = filesF.sub(name);
    const sha256 = e.str('sha256');
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new ManifestError(path, `${path}: \`files.${name}.sha256\` must be 64 lowercase hex digits`);
    files[name] = Object.freeze({ sha256, bytes: e.int('bytes') });
  }

  const components: Partial<Record<ComponentRole, ComponentEntry>> = {};
  for (const c of f.list('components')) {
    const role = c.str('role');
    if (!(COMPONENT_ROLES as readonly string[]).includes(role)) {
      throw new ManifestError(path, `${path}: unknown component role \`${role}\` (known: ${COMPONENT_ROLES.join(', ')}). The directory was written by a newer exporter; upgrade streamingt2v.`, { role });
    }
    const r = role as ComponentRole;
    if (components[r] !== undefined) throw new ManifestError(path, `${path}: component role \`${role}\` appears twice. Re-export the directory.`, { role });
    const file = c.file('file');
    const example = c.sub('example_dims');
    const atenOps = c.raw('aten_ops');
    components[r] = Object.freeze({
      role: r, file, path: join(root, file), moduleClass: c.str('module_class'), dtype: c.dtype('dtype'),
      inputs: Object.freeze(tensorSpecs(c, 'inputs')), outputs: Object.freeze(tensorSpecs(c, 'outputs')),
      exampleDims: Object.freeze(Object.fromEntries(Object.keys(example.obj).map((k) => [k, example.int(k)]))),
      parameters: c.int('parameters'),
      atenOps: Object.freeze(Array.isArray(atenOps) ? atenOps.filter((x): x is string => typeof x === 'string') : []),
    });
  }
  for (const role of opts.requiredRoles ?? COMPONENT_ROLES) {
    if (components[role] === undefined) {
      throw new ManifestError(path, `${path} has no \`${role}\` component, which is required. Re-export the complete directory with python3 -m models.export.`, { role });
    }
  }

  const tokF = f.sub('tokenizers');
  const tokenizer = (role: TextEncoderRole): TokenizerEntry => {
    const t = tokF.sub(role);
    const file = t.file('file');
    const configFile = t.file('config_file');
    return Object.freeze({
      file, path: join(root, file), configFile, configPath: join(root, configFile), maxLength: t.int('max_length'),
      bosId: t.int('bos_id'), eosId: t.int('eos_id'), padId: t.int('pad_id'),
    });
  };
  const tokenizers = Object.freeze({ text_encoder: tokenizer('text_encoder'), enhancer_text_encoder: tokenizer('enhancer_text_encoder') });

  const sch = f.sub('schedulers');
  const schedulers: ManifestSchedulers = Object.freeze({
    stage1: parseScheduler(sch, 'stage1', 'dpm_solver_multistep', dpmSolverConfigFromDiffusers),
    stage2: parseScheduler(sch, 'stage2', 'ddim', ddimConfigFromDiffusers),
    stage3: parseScheduler(sch, 'stage3', 'logsnr_cosine_interp', logSnrCosineInterpConfig),
  });
  const defaults = parseDefaults(f.sub('defaults'));
  const sources = f.list('sources').map((s) => {
    const comps = s.raw('components');
    return Object.freeze({ components: Array.isArray(comps) ? comps.map(String) : [], source: s.str('source'), license: s.str('license') });
  });
  const createdBy = f.raw('created_by');
  const minLibtorch = f.raw('min_libtorch');
  if (minLibtorch !== undefined && (typeof minLibtorch !== 'string' || !/^\d+\.\d+$/.test(minLibtorch))) {
    throw new ManifestError(path, `${path}: \`min_libtorch\` must be a "major.minor" string, not ${JSON.stringify(minLibtorch)}. Re-export the directory.`);
  }

  const promptWords = f.raw('prompt_words');
  if (promptWords !== undefined) {
    const bad = Array.isArray(promptWords) ? promptWords.find((w) => typeof w !== 'string' || !/^\p{L}+$/u.test(w) || w !== w.toLowerCase()) : promptWords;
    if (!Array.isArray(promptWords) || promptWords.length === 0 || bad !== undefined) {
      const what = Array.isArray(promptWords) ? (promptWords.length === 0 ? 'an empty list' : `a list holding ${JSON.stringify(bad)}`) : JSON.stringify(promptWords);
      throw new ManifestError(path, `${path}: \`prompt_words\` must be a non-empty list of lowercase words (letters only), not ${what}. Re-export the directory (python3 -m models.export --prompt-words core).`);
    }
  }

  const manifest: ModelManifest = Object.freeze({
    dir: root, path, formatVersion, name: f.str('name'), ...(minLibtorch === undefined ? {} : { minLibtorch }),
    ...(promptWords === undefined ? {} : { promptWords: Object.freeze([...(promptWords as string[])]) }),
    createdBy: Object.freeze(createdBy !== null && typeof createdBy === 'object' ? { ...(createdBy as Json) } : {}),
    components: Object.freeze(components), tokenizers, schedulers, defaults, sources: Object.freeze(sources), files: Object.freeze(files),
  });

  const checks: Promise<void>[] = [];
  const verify = opts.verifyHashes ?? true;
  for (const entry of Object.values(components)) checks.push(checkFile(root, path, files, entry.file, `component ${entry.role}`, verify));
  const tokFiles = new Set(Object.values(tokenizers).flatMap((t) => [t.file, t.configFile]));
  for (const file of tokFiles) checks.push(checkFile(root, path, files, file, 'tokenizer', verify));
  const results = await Promise.allSettled(checks);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return manifest;
}
