/**
 * The diffusion core: noise schedules (pure Float64 math), samplers (functions of denoiser, x, plan and
 * options; reentrant) and the stage-3 VP wrapper. See `README.md` in this folder for the glossary.
 *
 * @module
 */
export type {
  BetaScheduleName,
  DdimConfig,
  DpmSolverConfig,
  FinalSigmasType,
  LogSnrCosineInterpConfig,
  ModelDenoiser,
  NoiseRequest,
  NoiseScheduleConfig,
  PredictionType,
  SamplerRunOptions,
  SigmaDenoiser,
  StepInfo,
  StepNoise,
  TimestepSpacing,
} from './types.js';
export { ddimConfigFromDiffusers, dpmSolverConfigFromDiffusers, logSnrCosineInterpConfig } from './config.js';
export { alphasCumprodFrom, betasFor, cosineBetas, createDiscreteSchedule, vpScalars, type DiscreteSchedule } from './betas.js';
export { ddimTimesteps, dpmSolverTimesteps, roundHalfEven } from './timesteps.js';
export {
  createLogSnrCosineInterpSchedule,
  sdeditSigmas,
  sigmaVeToT,
  tToSigmaVe,
  vpScalingsAt,
  type LogSnrTable,
  type SdeditSigmaOptions,
  type SdeditSigmas,
} from './logsnr-cosine.js';
export { predictionCoefficients, type PredictionCoefficients } from './prediction.js';
export { createDdimPlan, ddimCoefficients, type DdimCoefficients, type DdimPlan } from './ddim-math.js';
export {
  createDpmSolverPlan,
  dpmSolverCoefficients,
  type DpmSolverCoefficients,
  type DpmSolverPlan,
} from './dpm-solver-math.js';
export { dpmpp2mSdeCoefficients, eulerCoefficients, type Dpmpp2mSdeParams, type SigmaStepCoefficients } from './sigma-math.js';
export { ddimStep, foldedFrameNoise, sampleDdim, type DdimOptions, type DdimStepResult } from './ddim.js';
export { dpmSolverStep, sampleDpmSolverMultistep, type DpmSolverStepResult } from './dpm-solver.js';
export { sampleDpmpp2mSde, type Dpmpp2mSdeOptions } from './dpmpp-2m-sde.js';
export { sampleEuler } from './euler.js';
export { vpModelToDenoiser, vpOutputToPredOriginal, type VpModel } from './vp-denoiser.js';
