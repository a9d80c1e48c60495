/**
 * What the pipeline stages need from a loaded model directory: one TorchModule per role plus the
 * two tokenizers, and the manifest's defaults. Kept as an interface so the stages do not depend
 * on how a directory is found, validated or loaded (lib/models/).
 * @module
 */
import type { Tensor } from '../tensor.js';
import type { TorchModule } from '../module.js';
import type { DdimConfig, DpmSolverConfig, LogSnrCosineInterpConfig } from '../schedulers/types.js';

/** Component roles of a model directory (manifest `components[].role`). */
export type ComponentRole =
  | 'text_encoder'
  | 'apm_image_encoder'
  | 'vae_encoder'
  | 'vae_decoder'
  | 'unet_stage1'
  | 'unet_stage2'
  | 'enhancer_text_encoder'
  | 'enhancer_unet'
  | 'enhancer_vae_encoder'
  | 'enhancer_vae_decoder';

/** Turns text into int64 token ids [1, 77] on a device. */
export type Tokenize = (text: string, device: string) => Promise<Tensor>;

/** Per-stage settings read from the manifest (official constants for `full`). */
export interface StageDefaults {
  stage1: { frames: number; height: number; width: number; steps: number; guidance: number; scheduler: DpmSolverConfig };
  stage2: { window: number; condFrames: number; steps: number; guidance: number; eta: number; replaceOverlap: number; cutRetries: number; scheduler: DdimConfig };
  stage3: {
    steps: number;
    guidance: number;
    rescale: number;
    noiseLevel: number;
    chunk: number;
    overlap: number;
    /** Side of the square the stage-2 frames are resized to (720 for `full`). */
    size: number;
    /** Width of the letterboxed output when padding (1280 for `full`). */
    padWidth: number;
    /** Joins prompt and positive prompt: caption = prompt + promptSuffix + positive (official ", ", G11). */
    promptSuffix: string;
    scheduler: LogSnrCosineInterpConfig;
  };
  /** Latent channels and VAE down-sampling factor. */
  latentChannels: number;
  vaeFactor: number;
  /** Frames per second of the written videos. */
  fps: number;
}

/** A loaded model set (see `ModelDirectory`). Modules are borrowed: the owner disposes them. */
export interface PipelineModels {
  module(role: ComponentRole): TorchModule;
  has(role: ComponentRole): boolean;
  tokenize: Tokenize;
  tokenizeEnhancer: Tokenize;
  defaults: StageDefaults;
  /** Device every module runs on. */
  device: string;
}
