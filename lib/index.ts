/**
 * streamingt2v: StreamingT2V long video generation for Node.js on libtorch.
 * This file only re-exports the public API.
 */
export { Tensor, type TensorOptions, type ResizeMode, type DType } from './tensor.js';
export { Generator } from './generator.js';
export { TensorScope } from './tensor-scope.js';
export { TorchModule, disposeOutput, type LoadModuleOptions, type ModuleInput, type ModuleOutput, type ModuleTarget } from './module.js';
export {
  cudaAvailable,
  cudaDeviceCount,
  cudaMemoryStats,
  cpuMemoryStats,
  resetCpuPeakMemory,
  setCpuMemoryLimit,
  type CpuMemoryStats,
  emptyCache,
  getNumThreads,
  pendingNativeTasks,
  resetPeakMemory,
  setNumThreads,
  setJitMode,
  getJitMode,
  setTf32,
  tf32Enabled,
  type JitMode,
  synchronize,
  torchInfo,
  type MemoryStats,
  type TorchInfo,
} from './device.js';
export {
  AbandonedError,
  BindingLoadError,
  DisposedError,
  hasErrorCode,
  InvalidArgumentError,
  isStreamingT2VError,
  ModelLoadError,
  NativeError,
  OutOfMemoryError,
  StreamingT2VError,
  TorchError,
  type ErrorCode,
} from './errors.js';
export * from './schedulers/index.js';
export { classifierFreeGuidance, guidanceFromBatch, guidanceRescaleFactor, type GuidanceOptions } from './guidance.js';
export { SharedNoiseSource, sharedNoiseSeed, type SharedNoiseOptions } from './noise-source.js';
export {
  planStage2Windows,
  planStage3Chunks,
  DEFAULT_WINDOW_FRAMES,
  DEFAULT_CONDITIONING_FRAMES,
  DEFAULT_CHUNK_FRAMES,
  DEFAULT_OVERLAP_FRAMES,
  type Stage2PlanOptions,
  type Stage2Plan,
  type WindowSegment,
  type Stage3PlanOptions,
  type Stage3ChunkPlan,
  type PlannedChunk,
  type ChunkBoundary,
} from './pipeline/chunk-plan.js';
export { Pcg32, type Pcg32State } from './pipeline/prng.js';
export {
  drawBlendCuts,
  blendCutsFromOffsets,
  blendOwnership,
  assembleBlended,
  denoiseChunksBlended,
  createBlendedDenoiser,
  type BlendCuts,
  type OwnedRange,
  type BlendTensorOptions,
  type ChunkDenoiser,
  type BlendedDenoiserOptions,
} from './pipeline/blending.js';
export {
  ShortTermMemory,
  LongTermMemory,
  serializeTensor,
  restoreTensor,
  type SerializedTensor,
  type ShortTermMemoryOptions,
  type ShortTermMemoryState,
  type LongTermMemoryOptions,
  type LongTermMemoryState,
  type ImageEncoder,
} from './pipeline/memory.js';
export { StreamingT2VPipeline, type PipelineLoadOptions } from './pipeline/pipeline.js';
export {
  planMemory,
  memoryPlanInputFromManifest,
  estimateActivation,
  formatBytes,
  STAGE_COMPONENTS,
  FULL_SIZE_PARAMETERS,
  type MemoryPlan,
  type StageMemoryPlan,
  type MemoryPlanInput,
  type MemoryPlanShapes,
  type ComponentFootprint,
  type CallShape,
  type PlanStage,
} from './pipeline/memory-plan.js';
export { generateLongVideo, streamLongVideo, type LongVideoOptions, type LongVideoResult, type StreamLongVideoOptions } from './pipeline/long-video.js';
export { readAhead, type ReadAheadOptions } from './pipeline/read-ahead.js';
export type { GenerateOptions, EnhanceOptions } from './pipeline/options.js';
export type { GeneratedFrame, FrameStage, ProgressEvent, ProgressPhase, StreamingT2VWarning } from './pipeline/types.js';
export { promptWords, unknownWords } from './pipeline/vocabulary.js';
export * from './video/index.js';
export { readManifest, resolveShape, resolveDim, getComponent, sha256File, COMPONENT_ROLES, MANIFEST_FILE, MANIFEST_FORMAT, SUPPORTED_MANIFEST_VERSION } from './models/manifest.js';
export type {
  ModelManifest,
  ComponentEntry,
  ComponentRole,
  TextEncoderRole,
  TensorSpec,
  SymbolicDim,
  TokenizerEntry,
  ManifestSchedulers,
  ManifestDefaults,
  Stage1Defaults,
  Stage2Defaults,
  Stage3Defaults,
  ManifestSource,
  ReadManifestOptions,
} from './models/manifest.js';
export { ManifestError, ManifestVersionError } from './models/manifest-error.js';
export { ModelDirectory, checkModuleSchema, type LoadModelDirectoryOptions } from './models/model-directory.js';
export { ClipTokenizer } from './models/tokenizer.js';
