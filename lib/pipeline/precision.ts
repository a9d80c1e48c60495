/**
 * Per-component compute dtypes (issue 7): which dtype each network runs in.
 *
 * Order of precedence for a component: the `dtypes` load option for its role, then the `dtype` load option
 * (every component), then on CUDA the manifest's `defaults.precision` (the official compute dtypes: stage 1
 * float16, stage 2 float32, the enhancer UNet float16, the enhancer VAE float32), and on the CPU the stored
 * dtype (float32: CPU half-precision kernels are slow or missing). The pipeline keeps latents, sampler state
 * and frames in float32 and loads every module with `castIO`, so each call casts its floating inputs to the
 * module's dtype and its outputs back to float32.
 *
 * @example
 * ```ts
 * const dtypes = resolveComponentDtypes(manifest, 'cuda:0', roles, { dtypes: { unet_stage2: 'float16' } });
 * dtypes.unet_stage1; // 'float16' (manifest precision.stage1)
 * dtypes.vae_decoder; // 'float32'
 * ```
 * @module
 */
import type { DType } from '../binding.js';
import { COMPONENT_ROLES, type ComponentRole, type ModelManifest } from '../models/manifest-types.js';
import { FLOATING_DTYPES } from '../module-cast.js';
import { invalid } from './options.js';

/** Floating dtypes a component may run in. */
export const COMPUTE_DTYPES: readonly DType[] = FLOATING_DTYPES;

/** The `defaults.precision` key (official compute groups) each role belongs to. */
export const PRECISION_GROUP: Readonly<Record<ComponentRole, string>> = {
  text_encoder: 'stage1',
  unet_stage1: 'stage1',
  apm_image_encoder: 'stage2',
  unet_stage2: 'stage2',
  vae_encoder: 'stage2',
  vae_decoder: 'stage2',
  enhancer_text_encoder: 'stage3_unet',
  enhancer_unet: 'stage3_unet',
  enhancer_vae_encoder: 'stage3_vae',
  enhancer_vae_decoder: 'stage3_vae',
};

/** Per-role dtype overrides (the `dtypes` load option). */
export type ComponentDtypes = Partial<Record<ComponentRole, DType>>;

/** Validates the `dtypes` load option: an object of component role -> floating dtype. */
export function checkComponentDtypes(value: unknown): ComponentDtypes | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalid('an object of component role -> dtype', 'dtypes', value);
  for (const [role, dtype] of Object.entries(value as Record<string, unknown>)) {
    if (!(COMPONENT_ROLES as readonly string[]).includes(role)) invalid(`a component role (${COMPONENT_ROLES.join(', ')})`, `dtypes.${role}`, role);
    if (!COMPUTE_DTYPES.includes(dtype as DType)) invalid(`one of ${COMPUTE_DTYPES.join(', ')}`, `dtypes.${role}`, dtype);
  }
  return value as ComponentDtypes;
}

/**
 * The dtype every role in `roles` runs in on `device` (see the module comment for the precedence).
 * float16 on the CPU is refused (libtorch has no CPU half kernels for matmul/conv: use bfloat16).
 */
export function resolveComponentDtypes(
  manifest: ModelManifest,
  device: string,
  roles: readonly ComponentRole[],
  options: { dtype?: DType | undefined; dtypes?: ComponentDtypes | undefined },
): Record<ComponentRole, DType> {
  const cuda = device.startsWith('cuda');
  const out = {} as Record<ComponentRole, DType>;
  for (const role of roles) {
    const stored = manifest.components[role]?.dtype ?? 'float32';
    const official = manifest.defaults.precision[PRECISION_GROUP[role]];
    const dtype = options.dtypes?.[role] ?? options.dtype ?? (cuda && official !== undefined ? official : stored);
    if (!cuda && dtype === 'float16') {
      const option = options.dtypes?.[role] !== undefined ? `dtypes.${role}` : 'dtype';
      invalid("'float32' or 'bfloat16' on the CPU (libtorch has no CPU float16 matmul/convolution kernels)", option, dtype);
    }
    out[role] = dtype;
  }
  return out;
}
