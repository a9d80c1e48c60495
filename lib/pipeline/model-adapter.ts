/**
 * Turns a model directory (lib/models) into what the pipeline stages need ({@link PipelineModels}):
 * the loaded modules, both tokenizers, and the manifest defaults in the stages' terms.
 * @module
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { InvalidArgumentError } from '../errors.js';
import { ModelDirectory } from '../models/model-directory.js';
import type { ModelManifest } from '../models/manifest.js';
import { ClipTokenizer } from '../models/tokenizer.js';
import { Tensor, type DType } from '../tensor.js';
import type { ComponentRole, PipelineModels, StageDefaults, Tokenize } from './models.js';

/** Roles the pipeline needs without and with the enhancer. */
const BASE_ROLES: readonly ComponentRole[] = ['text_encoder', 'apm_image_encoder', 'vae_encoder', 'vae_decoder', 'unet_stage1', 'unet_stage2'];
const ENHANCER_ROLES: readonly ComponentRole[] = ['enhancer_text_encoder', 'enhancer_unet', 'enhancer_vae_encoder', 'enhancer_vae_decoder'];

/** A loaded model set with its owner's lifecycle. */
export interface LoadedModels extends PipelineModels {
  dir: string;
  /** Identifies the weights (manifest hashes) for resume keys. */
  key: string;
  /** The manifest's name. */
  name: string;
  /** The manifest's `prompt_words` (a closed vocabulary), if any. */
  promptWords?: readonly string[] | undefined;
  hasEnhancer: boolean;
  dispose(): void;
}

/**
 * The model directory used when no `modelDir` is given: `models/default`, the tiny model trained on the
 * synthetic world (models/train/README.md), shipped in the package. In a development checkout without it
 * (it is built by `models.train`), `models/tiny` (same architecture, random weights) stands in.
 */
export function defaultModelDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    for (const name of ['default', 'tiny']) {
      const candidate = join(dir, 'models', name, 'manifest.json');
      if (existsSync(candidate)) return dirname(candidate);
    }
    dir = dirname(dir);
  }
  throw new InvalidArgumentError('Expected the embedded model directory models/default in the package but it is missing; pass `modelDir`');
}

/** The manifest defaults in the stages' terms. */
export function stageDefaults(m: ModelManifest): StageDefaults {
  const d = m.defaults;
  return {
    stage1: { frames: d.stage1.numFrames, height: d.stage1.height, width: d.stage1.width, steps: d.stage1.numInferenceSteps, guidance: d.stage1.guidanceScale, scheduler: m.schedulers.stage1 },
    stage2: {
      window: d.stage2.windowFrames,
      condFrames: d.stage2.conditioningFrames,
      steps: d.stage2.numInferenceSteps,
      guidance: d.stage2.guidanceScale,
      eta: d.stage2.eta,
      replaceOverlap: d.stage2.replaceOverlap,
      cutRetries: d.stage2.cutRetries,
      scheduler: m.schedulers.stage2,
    },
    stage3: {
      steps: d.stage3.numInferenceSteps,
      guidance: d.stage3.guidanceScale,
      rescale: d.stage3.guidanceRescale,
      noiseLevel: d.stage3.noiseLevel,
      chunk: d.stage3.chunkFrames,
      overlap: d.stage3.overlapFrames,
      size: d.stage3.height,
      padWidth: d.stage3.canvasWidth,
      promptSuffix: d.stage3.promptSuffix,
      scheduler: m.schedulers.stage3,
    },
    latentChannels: 4,
    vaeFactor: 8, // both VAEs (ModelScope / SD 2.1, and the tiny ones) downsample 8x
    fps: d.fps,
  };
}

function tokenizeWith(tok: ClipTokenizer): Tokenize {
  return (text, device) => Tensor.fromArray(BigInt64Array.from(tok.encode(text), (v) => BigInt(v)), [1, tok.maxLength], { device });
}

/** The component roles the pipeline loads. */
export function pipelineRoles(loadEnhancer: boolean): ComponentRole[] {
  return loadEnhancer ? [...BASE_ROLES, ...ENHANCER_ROLES] : [...BASE_ROLES];
}

/**
 * Loads a model directory for the pipeline. Every module is loaded with `castIO`: the stages keep float32
 * tensors and each call casts to the module's dtype (`dtypes`, see precision.ts) and back.
 */
export async function loadPipelineModels(opts: {
  modelDir?: string;
  device: string;
  /** Compute dtype per role (resolved by precision.ts). */
  dtypes?: Partial<Record<ComponentRole, DType>>;
  /** Device per role at load (a per-stage memory plan starts the non-stage-1 components on the CPU). */
  devices?: Partial<Record<ComponentRole, string>>;
  /** Freeze every module at load (see TorchModule.load). Default false. */
  freeze?: boolean;
  verifyChecksums: boolean;
  loadEnhancer: boolean;
}): Promise<LoadedModels> {
  if (opts.modelDir !== undefined && (typeof opts.modelDir !== 'string' || opts.modelDir.length === 0)) {
    throw new InvalidArgumentError(`Expected a directory path for \`modelDir\` but received ${String(opts.modelDir)}`);
  }
  const dir = resolve(opts.modelDir ?? defaultModelDir());
  const roles = pipelineRoles(opts.loadEnhancer);
  const directory = await ModelDirectory.load(dir, {
    device: opts.device,
    ...(opts.dtypes === undefined ? {} : { dtypes: opts.dtypes }),
    ...(opts.devices === undefined ? {} : { devices: opts.devices }),
    castIO: true,
    freeze: opts.freeze ?? false,
    roles,
    verifyHashes: opts.verifyChecksums,
  });
  try {
    const manifest = directory.manifest;
    const tokenizer = await ClipTokenizer.fromManifest(manifest, 'text_encoder');
    const enhancerTokenizer = opts.loadEnhancer ? await ClipTokenizer.fromManifest(manifest, 'enhancer_text_encoder') : tokenizer;
    const key = Object.entries(manifest.files)
      .map(([f, v]) => `${f}:${v.sha256}`)
      .sort()
      .join(',');
    return {
      dir,
      key,
      name: manifest.name,
      promptWords: manifest.promptWords,
      device: opts.device,
      hasEnhancer: opts.loadEnhancer,
      defaults: stageDefaults(manifest),
      module: (role) => directory.module(role),
      has: (role) => directory.has(role),
      tokenize: tokenizeWith(tokenizer),
      tokenizeEnhancer: tokenizeWith(enhancerTokenizer),
      dispose: () => directory.dispose(),
    };
  } catch (error) {
    directory.dispose();
    throw error;
  }
}
