/**
 * The one place that loads the native addon, and the hand-written type of its whole surface.
 * Nothing else imports the raw addon: lib/tensor.ts, lib/module.ts and lib/device.ts wrap it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { BindingLoadError } from './errors.js';

/** dtype names shared by TS and C++. */
export type DType = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'uint8' | 'int32' | 'int64' | 'bool';

/** Where a tensor lives / should be moved to, and its element type. */
export interface NativeTarget {
  dtype?: DType;
  device?: string;
}

/** A native tensor handle (ObjectWrap over `at::Tensor`). */
export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: DType;
  readonly device: string;
  readonly disposed: boolean;
  readonly byteLength: number;
  dispose(): void;
}

/** One argument of a TorchScript method schema. */
export interface NativeSchemaArgument {
  name: string;
  /** TorchScript type annotation, e.g. `Tensor`, `float`, `Optional[Tensor]`, `List[int]`. */
  type: string;
  hasDefault: boolean;
}

/** The `forward` schema of a loaded module (without `self`). */
export interface NativeSchema {
  name: string;
  arguments: NativeSchemaArgument[];
  returns: { type: string }[];
}

/** A value accepted by `forward`. */
export type NativeInput = NativeTensor | number | bigint | boolean | string | null | NativeInput[];
/** A value returned by `forward`. */
export type NativeOutput = NativeTensor | number | boolean | string | null | NativeOutput[] | { [key: string]: NativeOutput };

/** A loaded TorchScript module. */
export interface NativeModule {
  readonly schema: NativeSchema;
  readonly device: string;
  /** dtype of the floating-point parameters (else buffers); null when there are none. */
  readonly dtype: DType | null;
  readonly path: string;
  readonly disposed: boolean;
  forward(inputs: NativeInput[] | Record<string, NativeInput>): Promise<NativeOutput>;
  /** Moves parameters and buffers in place, on the executor of the current device. */
  moveTo(target: NativeTarget): Promise<void>;
  dispose(): void;
}

/** A seeded CPU generator with state. */
export interface NativeGenerator {
  readonly disposed: boolean;
  randn(shape: readonly number[], target?: NativeTarget): Promise<NativeTensor>;
  getState(): Promise<Uint8Array>;
  setState(state: Uint8Array): Promise<void>;
  dispose(): void;
}

export type HostArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

/** CUDA caching-allocator statistics in bytes. */
export interface NativeMemoryStats {
  allocated: number;
  reserved: number;
  peakAllocated: number;
  peakReserved: number;
}

/** CPU tensor memory as counted by the addon's CPU allocator (binding/cpu_memory.cc), bytes. */
export interface NativeCpuMemoryStats {
  allocated: number;
  peakAllocated: number;
  /** 0 = no limit. */
  limit: number;
  /** Allocations refused because of the limit, since the process started. */
  refused: number;
  /** False only if the accounting allocator could not be installed. */
  accounting: boolean;
}

/** libtorch version and build information. */
export interface NativeVersionInfo {
  torch: string;
  cudaBuild: boolean;
  torchSource: string;
  buildConfig: string;
  parallelInfo: string;
}

/** The whole native surface. Every compute call returns a Promise; getters are metadata reads. */
export interface NativeBinding {
  abiVersion: number;
  NativeTensor: new (external: never) => NativeTensor;
  NativeModule: new (external: never) => NativeModule;
  NativeGenerator: new (seed: number | bigint) => NativeGenerator;

  fromTypedArray(data: HostArray, shape: readonly number[], target?: NativeTarget): Promise<NativeTensor>;
  toTypedArray(tensor: NativeTensor, asFloat32?: boolean): Promise<HostArray>;
  randn(shape: readonly number[], seed: number | bigint, target?: NativeTarget): Promise<NativeTensor>;
  full(shape: readonly number[], value: number, target?: NativeTarget): Promise<NativeTensor>;
  combine(terms: readonly NativeTensor[], coeffs: readonly number[]): Promise<NativeTensor>;
  addcmul(a: NativeTensor, b: NativeTensor, c: NativeTensor, value?: number): Promise<NativeTensor>;
  cat(tensors: readonly NativeTensor[], dim: number): Promise<NativeTensor>;
  narrow(tensor: NativeTensor, dim: number, start: number, length: number): Promise<NativeTensor>;
  reshape(tensor: NativeTensor, shape: readonly number[]): Promise<NativeTensor>;
  permute(tensor: NativeTensor, dims: readonly number[]): Promise<NativeTensor>;
  to(tensor: NativeTensor, target: NativeTarget): Promise<NativeTensor>;
  clamp(tensor: NativeTensor, min: number, max: number): Promise<NativeTensor>;
  clone(tensor: NativeTensor): Promise<NativeTensor>;
  reduce(tensor: NativeTensor, op: 'mean' | 'std' | 'sum' | 'maxAbs'): Promise<number>;
  resize(
    tensor: NativeTensor,
    size: readonly [number, number],
    mode: 'nearest' | 'bilinear' | 'bicubic' | 'area',
    antialias?: boolean,
    alignCorners?: boolean,
  ): Promise<NativeTensor>;
  pad(tensor: NativeTensor, padding: readonly [number, number, number, number], value: number): Promise<NativeTensor>;
  toRgbFrames(video: NativeTensor, round?: boolean): Promise<Uint8Array>;
  fromRgbFrames(frames: Uint8Array, shape: readonly number[], target?: NativeTarget): Promise<NativeTensor>;

  loadModule(path: string, options?: NativeTarget & { freeze?: boolean; optimize?: boolean }): Promise<NativeModule>;

  cudaAvailable(): boolean;
  cudaDeviceCount(): number;
  versionInfo(): NativeVersionInfo;
  setNumThreads(threads: number): void;
  getNumThreads(): number;
  setJitMode(mode: 'profiling' | 'legacy' | 'simple', optimize: boolean): void;
  getJitMode(): { mode: 'profiling' | 'legacy' | 'simple'; optimize: boolean };
  setAllowTf32(enabled: boolean): void;
  getAllowTf32(): boolean;
  liveTensorCount(): number;
  pendingTasks(): number;
  memoryStats(device?: string): Promise<NativeMemoryStats>;
  cpuMemoryStats(): NativeCpuMemoryStats;
  resetCpuPeak(): void;
  setCpuMemoryLimit(bytes: number): void;
  resetPeakMemory(device?: string): Promise<void>;
  synchronize(device?: string): Promise<void>;
  emptyCache(device?: string): Promise<void>;
}

/** The ABI the TS layer was written for; bumped together with binding/addon.cc. */
const EXPECTED_ABI = 2;

/** Finds the package root (the directory holding our package.json) from this file. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      try {
        if ((JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string }).name === 'streamingt2v') return dir;
      } catch {
        // keep walking
      }
    }
    dir = dirname(dir);
  }
  throw new BindingLoadError('streamingt2v: cannot find the package root (package.json) to load the native addon from');
}

function loadError(root: string, cause: unknown): BindingLoadError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  const missingTorch = /libtorch|libc10|libtorch_cpu|libtorch_cuda/.test(reason);
  const lines = [
    'streamingt2v: the native addon could not be loaded.',
    `  Reason: ${reason}`,
    '  Tried (node-gyp-build order):',
    `    - ${join(root, 'build', 'Release')} (a source build)`,
    `    - ${join(root, 'prebuilds', `${process.platform}-${process.arch}`)} (a prebuild)`,
    '  Possible solutions:',
    missingTorch
      ? '    - libtorch shared libraries were not found: install them (Debian/Ubuntu: `apt-get install --no-install-recommends libtorch-dev libopenblas0-openmp`) or rebuild against your pip torch (below).'
      : '    - Install libtorch: Debian/Ubuntu `apt-get install --no-install-recommends libtorch-dev libopenblas0-openmp`, or pip torch (GPU).',
    `    - Build from source (needed when install scripts were blocked, e.g. npm 11, or torch changed): \`cd ${root} && npx cmake-js rebuild\``,
    '    - For a CUDA torch from pip: `TORCH_PYTHON=$(command -v python) CUDA_HOME=/usr/local/cuda npx cmake-js rebuild` in the package directory.',
    '    - To ignore prebuilds and force a source build at install time: `STREAMINGT2V_BUILD_FROM_SOURCE=1 npm rebuild streamingt2v`.',
  ];
  return new BindingLoadError(lines.join('\n'), cause);
}

let cached: NativeBinding | undefined;

/**
 * Loads the addon once (node-gyp-build: `build/Release` first, then `prebuilds/`).
 * Throws {@link BindingLoadError} with a multi-line explanation on failure.
 * @internal
 */
export function binding(): NativeBinding {
  if (cached !== undefined) return cached;
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  let loaded: NativeBinding;
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    loaded = nodeGypBuild(root) as NativeBinding;
  } catch (error) {
    throw loadError(root, error);
  }
  if (loaded.abiVersion !== EXPECTED_ABI) {
    throw loadError(root, new Error(`addon ABI ${String(loaded.abiVersion)} does not match the TypeScript layer (${EXPECTED_ABI}); rebuild it`));
  }
  cached = loaded;
  return loaded;
}
