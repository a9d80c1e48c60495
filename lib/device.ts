/**
 * Device and runtime information: CUDA availability, memory statistics, synchronisation,
 * libtorch version/build flags and the intra-op thread count.
 *
 * @example
 * ```ts
 * if (cudaAvailable()) console.log(await cudaMemoryStats('cuda:0'));
 * setNumThreads(2);
 * ```
 */
import { binding, type NativeCpuMemoryStats, type NativeMemoryStats, type NativeVersionInfo } from './binding.js';
import { callNative, callNativeSync, InvalidArgumentError } from './errors.js';

export type MemoryStats = NativeMemoryStats;
export type TorchInfo = NativeVersionInfo;
export type CpuMemoryStats = NativeCpuMemoryStats;

/** True when libtorch was built with CUDA and a device is visible. */
export function cudaAvailable(): boolean {
  return binding().cudaAvailable();
}
/** Number of visible CUDA devices (0 on CPU builds). */
export function cudaDeviceCount(): number {
  return binding().cudaDeviceCount();
}
/** libtorch version, whether it is a CUDA build, where it was found, build flags and thread info. */
export function torchInfo(): TorchInfo {
  return binding().versionInfo();
}
/** Sets libtorch's intra-op thread count for all executors (default: all cores, or OMP_NUM_THREADS). */
export function setNumThreads(threads: number): void {
  callNativeSync(() => binding().setNumThreads(threads));
}
/** TorchScript executor settings (process-wide). */
export interface JitMode {
  /** 'profiling' (libtorch's default executor), 'legacy', or 'simple' (no specialization). */
  mode: 'profiling' | 'legacy' | 'simple';
  /** Run graph optimization passes (fusion, specialization). */
  optimize: boolean;
}

/**
 * Sets how TorchScript executes. Default here: `{ mode: 'profiling', optimize: false }`: with
 * libtorch's own default (`optimize: true`) the first 2–4 calls of a UNet profile and re-optimize
 * the graph for seconds each (measured 12.7 s on the third call of the tiny stage-2 UNet) for no
 * steady-state gain on convolution/matmul-bound networks (86–90 ms vs 87–92 ms per call).
 */
export function setJitMode(mode: JitMode): void {
  callNativeSync(() => binding().setJitMode(mode.mode, mode.optimize));
}
/** The current TorchScript executor settings. */
export function getJitMode(): JitMode {
  return binding().getJitMode();
}
/**
 * Allows (or forbids) TF32 math for float32 matrix multiplications (cuBLAS) and convolutions
 * (cuDNN) on CUDA. TF32 keeps float32 range but rounds the inputs of those kernels to a 10-bit
 * mantissa, which is several times faster on Ampere and newer GPUs; the result differs from
 * strict float32 by about 1e-3 relative. Process-wide. It has no effect on CPU, nor on
 * float16/bfloat16/float64 tensors. libtorch 1.13's default: cuBLAS off, cuDNN on, so
 * {@link tf32Enabled} reports `false` until `setTf32(true)`.
 *
 * @example
 * ```ts
 * setTf32(true); // before loading a float32 UNet on an A100
 * ```
 */
export function setTf32(enabled: boolean): void {
  if (typeof enabled !== 'boolean') {
    throw new InvalidArgumentError(`Expected a boolean for \`enabled\` but received ${String(enabled)} of type ${typeof enabled}`);
  }
  callNativeSync(() => binding().setAllowTf32(enabled));
}
/** True when TF32 is allowed for both CUDA float32 matmuls and convolutions (see {@link setTf32}). */
export function tf32Enabled(): boolean {
  return binding().getAllowTf32();
}
/** The current intra-op thread count. */
export function getNumThreads(): number {
  return binding().getNumThreads();
}
/** CUDA caching-allocator statistics (bytes): allocated, reserved and their peaks. */
export function cudaMemoryStats(device = 'cuda:0'): Promise<MemoryStats> {
  return callNative(() => binding().memoryStats(device));
}
/** Resets the peak counters of {@link cudaMemoryStats}. */
export function resetPeakMemory(device = 'cuda:0'): Promise<void> {
  return callNative(() => binding().resetPeakMemory(device));
}
/** Waits for all queued GPU work on `device`. */
export function synchronize(device = 'cuda:0'): Promise<void> {
  return callNative(() => binding().synchronize(device));
}
/** Returns cached, unused GPU memory to the driver. */
export function emptyCache(device = 'cuda:0'): Promise<void> {
  return callNative(() => binding().emptyCache(device));
}
/**
 * Memory held by CPU tensors (bytes), counted by the addon's CPU allocator: `allocated` now,
 * `peakAllocated` since the last {@link resetCpuPeakMemory}, the `limit` (0 = none) and how many
 * allocations it `refused`. Covers every CPU tensor libtorch allocates in this process (weights,
 * activations, our tensors), not the rest of the heap (so it is below RSS).
 *
 * @example
 * ```ts
 * resetCpuPeakMemory();
 * await generateLongVideo({ prompt, numFrames: 240, output: 'out.mp4' });
 * console.log(cpuMemoryStats().peakAllocated / 2 ** 20, 'MiB');
 * ```
 */
export function cpuMemoryStats(): CpuMemoryStats {
  return binding().cpuMemoryStats();
}
/** Sets {@link cpuMemoryStats}' `peakAllocated` to the current `allocated`. */
export function resetCpuPeakMemory(): void {
  binding().resetCpuPeak();
}
/**
 * Caps the memory of all CPU tensors in this process at `bytes` (`0` or `null`: no cap, the
 * default). An allocation that would pass it fails at once with `OutOfMemoryError`
 * (code `ERR_OUT_OF_MEMORY`) instead of the machine swapping or the process being killed; a
 * generation stops with the stage and window named and can be resumed. Allocations already made
 * are not affected. Process-wide, like the memory it guards.
 *
 * @example
 * ```ts
 * setCpuMemoryLimit(8 * 2 ** 30); // 8 GiB of tensors at most
 * ```
 */
export function setCpuMemoryLimit(bytes: number | null): void {
  callNativeSync(() => binding().setCpuMemoryLimit(bytes ?? 0));
}
/** Native work submitted and not yet settled (all devices). */
export function pendingNativeTasks(): number {
  return binding().pendingTasks();
}
