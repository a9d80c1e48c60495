/**
 * A loaded model directory: the validated manifest plus one {@link TorchModule} per component role.
 *
 * @example
 * ```ts
 * await using models = await ModelDirectory.load('models/tiny', { device: 'cpu' });
 * const ctx = await models.textEncoder.forwardTensor({ input_ids: ids });
 * models.manifest.defaults.stage2.guidanceScale; // 7.5
 * ```
 *
 * @module
 */
import type { DType } from '../binding.js';
import { torchInfo } from '../device.js';
import { DisposedError, InvalidArgumentError, ModelLoadError, StreamingT2VError } from '../errors.js';
import { TorchModule } from '../module.js';
import { FLOATING_DTYPES } from '../module-cast.js';
import { ManifestError } from './manifest-error.js';
import { COMPONENT_ROLES, readManifest, type ComponentEntry, type ComponentRole, type ModelManifest } from './manifest.js';

/** Options for {@link ModelDirectory.load}. */
export interface LoadModelDirectoryOptions {
  /** `'cpu'`, `'cuda'` or `'cuda:N'`. Defaults to `'cpu'`. */
  device?: string;
  /** Cast the floating-point weights of every loaded module to this dtype. Defaults to the stored dtype. */
  dtype?: DType;
  /** Roles to load (and require in the manifest). Defaults to all ten. */
  roles?: readonly ComponentRole[];
  /** Hash every file against the manifest before loading. Defaults to `true`. */
  verifyHashes?: boolean;
  /** Freeze each module at load time (see {@link TorchModule.load}). Defaults to `false`. */
  freeze?: boolean;
  /** Per-role dtype, winning over `dtype` for that role. Example: `{ unet_stage1: 'float16' }`. Defaults to none. */
  dtypes?: Partial<Record<ComponentRole, DType>>;
  /** Per-role device, winning over `device` (e.g. components a memory plan keeps on the CPU at first). Defaults to none. */
  devices?: Partial<Record<ComponentRole, string>>;
  /** Load every module with `castIO` (see {@link TorchModule.load}): float inputs cast to its dtype, float outputs to float32. Defaults to `false`. */
  castIO?: boolean;
}

const FLOAT_DTYPES = FLOATING_DTYPES;

/**
 * Throws {@link ManifestError} (naming the file and the component) when the module's `forward` arguments or
 * its number of outputs differ from the manifest entry.
 */
export function checkModuleSchema(module: TorchModule, entry: ComponentEntry): void {
  const actual = module.inputNames;
  const expected = entry.inputs.map((t) => t.name);
  const fix = 'The file and the manifest come from different exports: re-export the directory with python3 -m models.export.';
  if (actual.length !== expected.length || actual.some((name, i) => name !== expected[i])) {
    throw new ManifestError(
      entry.path,
      `${entry.path} (component ${entry.role}) has forward(${actual.join(', ')}), but the manifest lists inputs (${expected.join(', ')}). ${fix}`,
      { role: entry.role },
    );
  }
  const returns = module.schema.returns[0]?.type ?? '';
  const tuple = /^\((.*)\)$|^Tuple\[(.*)\]$/.exec(returns);
  const count = tuple === null ? 1 : (tuple[1] ?? tuple[2] ?? '').split(',').length;
  if (count !== entry.outputs.length) {
    throw new ManifestError(
      entry.path,
      `${entry.path} (component ${entry.role}) returns ${returns || 'nothing'}, but the manifest lists ${entry.outputs.length} outputs (${entry.outputs.map((t) => t.name).join(', ')}). ${fix}`,
      { role: entry.role },
    );
  }
}

/** major.minor of a version string ("2.11.0+cu130" -> [2, 11]); [0, 0] when unreadable. */
function majorMinor(version: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(version);
  return m === null ? [0, 0] : [Number(m[1]), Number(m[2])];
}

/**
 * Throws {@link ModelLoadError} when the manifest's `min_libtorch` (files using ops newer than libtorch 1.13, e.g.
 * fused attention) is newer than the running libtorch `torch` (e.g. "1.13.1"), before any file is read.
 */
export function checkLibtorchVersion(manifest: ModelManifest, torch: string): void {
  if (manifest.minLibtorch === undefined) return;
  const [needMajor, needMinor] = majorMinor(manifest.minLibtorch);
  const [major, minor] = majorMinor(torch);
  if (major > needMajor || (major === needMajor && minor >= needMinor)) return;
  throw new ModelLoadError(
    manifest.path,
    `${manifest.dir} needs libtorch >= ${manifest.minLibtorch} (its files use newer operators, e.g. fused attention), but this addon runs libtorch ${torch}: ` +
      're-export it with `python3 -m models.export --attention math`, or build the addon against torch >= ' + `${manifest.minLibtorch} (see README "How libtorch is found")`,
  );
}

/** The manifest and the loaded components of a model directory. Dispose it to release all modules. */
export class ModelDirectory implements Disposable, AsyncDisposable {
  /** The validated manifest. */
  readonly manifest: ModelManifest;
  /** Device the modules run on. */
  readonly device: string;
  /** The dtype override used at load, if any. */
  readonly dtype: DType | undefined;
  readonly #modules: Map<ComponentRole, TorchModule>;
  #disposed = false;

  private constructor(manifest: ModelManifest, device: string, dtype: DType | undefined, modules: Map<ComponentRole, TorchModule>) {
    this.manifest = manifest;
    this.device = device;
    this.dtype = dtype;
    this.#modules = modules;
  }

  /**
   * Reads and validates the manifest (see `readManifest`), then loads the requested roles one by one and checks
   * each module's schema against the manifest. On any failure the modules loaded so far are disposed and the
   * error ({@link ModelLoadError} / {@link ManifestError}) is rethrown.
   */
  static async load(dir: string, opts: LoadModelDirectoryOptions = {}): Promise<ModelDirectory> {
    const roles = opts.roles ?? COMPONENT_ROLES;
    for (const role of roles) {
      if (!(COMPONENT_ROLES as readonly string[]).includes(role)) {
        throw new InvalidArgumentError(`Unknown component role \`${String(role)}\`; expected one of ${COMPONENT_ROLES.join(', ')}`);
      }
    }
    if (opts.dtype !== undefined && !FLOAT_DTYPES.includes(opts.dtype)) {
      throw new InvalidArgumentError(`Expected a floating-point \`dtype\` (${FLOAT_DTYPES.join(', ')}) but received ${String(opts.dtype)}`);
    }
    for (const [role, dtype] of Object.entries(opts.dtypes ?? {})) {
      if (!FLOAT_DTYPES.includes(dtype)) {
        throw new InvalidArgumentError(`Expected a floating-point \`dtypes.${role}\` (${FLOAT_DTYPES.join(', ')}) but received ${String(dtype)}`);
      }
    }
    const device = opts.device ?? 'cpu';
    const manifest = await readManifest(dir, { verifyHashes: opts.verifyHashes ?? true, requiredRoles: roles });
    checkLibtorchVersion(manifest, torchInfo().torch);
    const modules = new Map<ComponentRole, TorchModule>();
    try {
      for (const role of roles) {
        const entry = manifest.components[role] as ComponentEntry;
        const dtype = opts.dtypes?.[role] ?? opts.dtype;
        const module = await TorchModule.load(entry.path, {
          device: opts.devices?.[role] ?? device,
          ...(dtype === undefined ? {} : { dtype }),
          freeze: opts.freeze ?? false,
          castIO: opts.castIO ?? false,
          keepInputDtypes: entry.inputs.filter((t) => t.fixedDtype).map((t) => t.name),
        });
        modules.set(role, module);
        checkModuleSchema(module, entry);
      }
    } catch (error) {
      for (const m of modules.values()) m.dispose();
      if (error instanceof StreamingT2VError) throw error;
      throw new ManifestError(manifest.path, `Loading ${manifest.dir} failed: ${String(error)}`, { cause: error });
    }
    return new ModelDirectory(manifest, device, opts.dtype, modules);
  }

  /** Roles that were loaded. */
  get roles(): ComponentRole[] {
    return [...this.#modules.keys()];
  }
  /** True when `role` was loaded. */
  has(role: ComponentRole): boolean {
    return this.#modules.has(role);
  }
  /** The module of `role`; throws {@link InvalidArgumentError} when it was not loaded, and after `dispose()`. */
  module(role: ComponentRole): TorchModule {
    const m = this.#modules.get(role);
    if (this.#disposed) throw new DisposedError(`ModelDirectory ${this.manifest.dir}`);
    if (m === undefined) {
      throw new InvalidArgumentError(`Component \`${role}\` was not loaded from ${this.manifest.dir} (pass it in \`roles\`)`);
    }
    return m;
  }
  /** The manifest entry of `role`. */
  entry(role: ComponentRole): ComponentEntry {
    const e = this.manifest.components[role];
    if (e === undefined) throw new InvalidArgumentError(`${this.manifest.path} has no \`${role}\` component`);
    return e;
  }

  /** Stage 1/2 text encoder: `input_ids` int64 [B,77] → [B,77,D]. */
  get textEncoder(): TorchModule {
    return this.module('text_encoder');
  }
  /** APM: `image` [B,3,H,W] in [-1,1] → tokens [B,16,D]. */
  get apmImageEncoder(): TorchModule {
    return this.module('apm_image_encoder');
  }
  /** Stage 1/2 VAE encoder: `video` [B,3,F,H,W] → (mean, std) [B,4,F,H/8,W/8], scaled by 0.18215. */
  get vaeEncoder(): TorchModule {
    return this.module('vae_encoder');
  }
  /** Stage 1/2 VAE decoder: `latents` [B,4,F,h,w] → video [B,3,F,8h,8w]. */
  get vaeDecoder(): TorchModule {
    return this.module('vae_decoder');
  }
  /** Stage 1 UNet: (`sample`, `timestep`, `encoder_hidden_states` [B,77,D]) → eps. */
  get unetStage1(): TorchModule {
    return this.module('unet_stage1');
  }
  /** Stage 2 UNet (base + CAM + APM mixing): (`sample` [B,4,16,h,w], `timestep`, `encoder_hidden_states` [B,93,D], `cond_frames` [B,3,8,H,W]) → eps. */
  get unetStage2(): TorchModule {
    return this.module('unet_stage2');
  }
  /** Enhancer text encoder (OpenCLIP penultimate + ln_final): `input_ids` [B,77] → [B,77,D]. */
  get enhancerTextEncoder(): TorchModule {
    return this.module('enhancer_text_encoder');
  }
  /** Enhancer UNet (MS-Vid2Vid-XL): (`sample`, `timestep`, `encoder_hidden_states`) → v. */
  get enhancerUnet(): TorchModule {
    return this.module('enhancer_unet');
  }
  /** Enhancer VAE encoder (SD 2.1). */
  get enhancerVaeEncoder(): TorchModule {
    return this.module('enhancer_vae_encoder');
  }
  /** Enhancer VAE decoder (SD 2.1). */
  get enhancerVaeDecoder(): TorchModule {
    return this.module('enhancer_vae_decoder');
  }

  /** True once disposed. */
  get disposed(): boolean {
    return this.#disposed;
  }
  /** Disposes every module (in-flight forwards finish first). Idempotent. */
  dispose(): void {
    for (const m of this.#modules.values()) m.dispose();
    this.#modules.clear();
    this.#disposed = true;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}
