/**
 * Types and constants of a model directory's `manifest.json` (the reader and validation are in manifest.ts).
 * @module
 */
import type { DType } from '../binding.js';
import type { DdimConfig, DpmSolverConfig, LogSnrCosineInterpConfig } from '../schedulers/types.js';

/** File name of the manifest inside a model directory. */
export const MANIFEST_FILE = 'manifest.json';
/** Value of the manifest's `format` field. */
export const MANIFEST_FORMAT = 'streamingt2v-model-directory';
/** Newest `format_version` this library reads. */
export const SUPPORTED_MANIFEST_VERSION = 1;

/** Component roles, in pipeline order. */
export const COMPONENT_ROLES = [
  'text_encoder',
  'apm_image_encoder',
  'vae_encoder',
  'vae_decoder',
  'unet_stage1',
  'unet_stage2',
  'enhancer_text_encoder',
  'enhancer_unet',
  'enhancer_vae_encoder',
  'enhancer_vae_decoder',
] as const;
/** One component role. */
export type ComponentRole = (typeof COMPONENT_ROLES)[number];
/** Roles whose text encoder has a tokenizer entry. */
export type TextEncoderRole = 'text_encoder' | 'enhancer_text_encoder';

/** A shape entry: an integer, or a symbol (`B`, `H`), `name/k` (`H/8`) or `k*name` (`8*h`). */
export type SymbolicDim = number | string;

/** A named input or output of a component. */
export interface TensorSpec {
  readonly name: string;
  readonly shape: readonly SymbolicDim[];
  readonly dtype: DType;
  /** True when the dtype stays as written when the module is loaded with another `dtype` (e.g. `timestep`). */
  readonly fixedDtype: boolean;
}

/** One TorchScript component. */
export interface ComponentEntry {
  readonly role: ComponentRole;
  /** File name relative to the directory. */
  readonly file: string;
  /** Absolute path of the file. */
  readonly path: string;
  /** The Python class that was scripted (informative). */
  readonly moduleClass: string;
  /** dtype of the stored floating-point weights. */
  readonly dtype: DType;
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  /** Dim bindings the export checked the component at (small; usable for smoke tests). */
  readonly exampleDims: Readonly<Record<string, number>>;
  readonly parameters: number;
  /** `aten::` operators in the graph (all present in libtorch 1.13). */
  readonly atenOps: readonly string[];
}

/** Tokenizer of one text encoder (CLIP BPE, `@huggingface/tokenizers` format). */
export interface TokenizerEntry {
  readonly file: string;
  readonly path: string;
  readonly configFile: string;
  readonly configPath: string;
  readonly maxLength: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
}

/** Parsed per-stage scheduler configs (see `lib/schedulers/config.ts`). */
export interface ManifestSchedulers {
  /** Stage 1: `DPMSolverMultistepScheduler.from_config(<ModelScope DDIM config>)`. */
  readonly stage1: DpmSolverConfig;
  /** Stage 2: DDIM, leading spacing, offset 1. */
  readonly stage2: DdimConfig;
  /** Stage 3: MS-Vid2Vid-XL logsnr_cosine_interp schedule. */
  readonly stage3: LogSnrCosineInterpConfig;
}

/** Stage-1 defaults (spec §1.4). */
export interface Stage1Defaults {
  readonly height: number;
  readonly width: number;
  readonly numFrames: number;
  readonly numInferenceSteps: number;
  readonly guidanceScale: number;
}

/** The most cut-guard retries a stage-2 window may get (`stage2.cutRetries`, manifest `cut_retries`). */
export const MAX_CUT_RETRIES = 10;

/** Stage-2 defaults (spec §1.5–§1.6). */
export interface Stage2Defaults {
  readonly height: number;
  readonly width: number;
  readonly windowFrames: number;
  readonly conditioningFrames: number;
  readonly anchorFrames: number;
  readonly numInferenceSteps: number;
  readonly guidanceScale: number;
  readonly eta: number;
  readonly seed: number;
  readonly negativePrompt: string;
  /** `replace_overlap` (optional, default 0): the model's default for the `stage2.replaceOverlap` option (not in the paper; see lib/pipeline/replace-overlap.ts). */
  readonly replaceOverlap: number;
  /** `cut_retries` (optional, default 0): the model's default for the `stage2.cutRetries` option (not in the paper; see lib/pipeline/cut-guard.ts). */
  readonly cutRetries: number;
}

/** Stage-3 (enhancer) defaults (spec §1.8–§1.9). */
export interface Stage3Defaults {
  /** Square content size after the upscale (720 for the released model). */
  readonly height: number;
  readonly width: number;
  /** Letterboxed canvas (720×1280 for the released model). */
  readonly canvasHeight: number;
  readonly canvasWidth: number;
  readonly resizeMode: string;
  readonly numInferenceSteps: number;
  readonly guidanceScale: number;
  readonly guidanceRescale: number;
  /** Total noise levels (600) and the first timestep (599). */
  readonly noiseLevel: number;
  readonly startTimestep: number;
  readonly chunkFrames: number;
  readonly overlapFrames: number;
  readonly solver: string;
  readonly timestepSpacing: string;
  readonly predictionType: string;
  readonly noiseSeed: number;
  readonly negativePrompt: string;
  /** Appended to the prompt (`prompt + ", "`). */
  readonly promptSuffix: string;
}

/** Pipeline defaults. */
export interface ManifestDefaults {
  readonly fps: number;
  readonly latentScale: number;
  readonly stage1: Stage1Defaults;
  readonly stage2: Stage2Defaults;
  readonly stage3: Stage3Defaults;
  /** Official compute dtypes on CUDA (`stage1`, `stage2`, `stage3_unet`, `stage3_vae`). */
  readonly precision: Readonly<Record<string, DType>>;
}

/** Provenance and licence of some components. */
export interface ManifestSource {
  readonly components: readonly string[];
  readonly source: string;
  readonly license: string;
}

/** The validated manifest of a model directory. */
export interface ModelManifest {
  /** Absolute directory. */
  readonly dir: string;
  /** Absolute path of manifest.json. */
  readonly path: string;
  readonly formatVersion: number;
  readonly name: string;
  /**
   * The oldest libtorch (major.minor) that can load the files, when the exporter used newer ops (e.g. "2.0" for
   * fused attention, `aten::scaled_dot_product_attention`); undefined when libtorch 1.13 can.
   */
  readonly minLibtorch?: string | undefined;
  readonly createdBy: Readonly<Record<string, unknown>>;
  /** Components by role (all ten unless `requiredRoles` allowed fewer). */
  readonly components: Readonly<Partial<Record<ComponentRole, ComponentEntry>>>;
  readonly tokenizers: Readonly<Record<TextEncoderRole, TokenizerEntry>>;
  readonly schedulers: ManifestSchedulers;
  readonly defaults: ManifestDefaults;
  readonly sources: readonly ManifestSource[];
  /** sha256 (hex) and size of every file, by file name. */
  readonly files: Readonly<Record<string, { readonly sha256: string; readonly bytes: number }>>;
  /**
   * Every word the text encoder saw in training, for a model trained on a closed world (manifest `prompt_words`,
   * lowercase words of letters; the embedded default model: the 27 words of its synthetic world's captions). A
   * prompt with other words gets a `PROMPT_OUTSIDE_VOCABULARY` warning (`onWarning`). Undefined for an open
   * vocabulary (the official weights): no warning.
   */
  readonly promptWords?: readonly string[] | undefined;
}

/** Options for {@link readManifest}. */
export interface ReadManifestOptions {
  /** Hash every file and compare with the manifest (sizes are always compared). Defaults to `true`. */
  verifyHashes?: boolean;
  /** Roles that must be present. Defaults to all of {@link COMPONENT_ROLES}. */
  requiredRoles?: readonly ComponentRole[];
}
