/**
 * streamingt2v: StreamingT2V long video generation for Node.js on libtorch.
 * This file only re-exports the public API.
 */
export { Tensor, type TensorOptions, type ResizeMode, type DType } from './tensor.js';
export { Generator } from './generator.js';
export { TensorScope } from './tensor-scope.js';
export { TorchModule, disposeOutput, type LoadModuleOptions, type ModuleInput, type ModuleOutput } from './module.js';
export {
  cudaAvailable,
  cudaDeviceCount,
  cudaMemoryStats,
  emptyCache,
  getNumThreads,
  pendingNativeTasks,
  resetPeakMemory,
  setNumThreads,
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
