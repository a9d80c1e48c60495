/**
 * Applying a memory plan's residency (issue 7): under the 'per-stage' policy only the running stage's
 * components are on the device; the others wait on the CPU (`TorchModule.moveTo`). Moves to the CPU go
 * first, so that the device never holds both stages' weights. Under 'all-resident' (or without a plan)
 * nothing moves. Modules keep their dtype when moved.
 *
 * @example
 * ```ts
 * await placeForStage(models, memory.placement?.stage2, models.device); // stage-1 UNet to the CPU, stage-2 UNet in
 * ```
 * @module
 */
import { COMPONENT_ROLES } from '../models/manifest-types.js';
import type { ComponentRole, PipelineModels } from './models.js';

/**
 * Moves every loaded component to `device` when it is in `resident`, else to the CPU. No-op when
 * `resident` is undefined (no per-stage plan); moves nothing when the pipeline runs on the CPU (all are there).
 */
export async function placeForStage(models: PipelineModels, resident: readonly ComponentRole[] | undefined, device: string): Promise<void> {
  if (resident === undefined) return;
  const loaded = COMPONENT_ROLES.filter((r) => models.has(r));
  const out = loaded.filter((r) => !resident.includes(r) && models.module(r).device !== 'cpu');
  const into = loaded.filter((r) => resident.includes(r) && models.module(r).device !== device);
  for (const role of out) await models.module(role).moveTo({ device: 'cpu' });
  for (const role of into) await models.module(role).moveTo({ device });
}

/** Where each component is loaded under a per-stage plan: stage 1's components on `device`, the rest on the CPU. */
export function initialDevices(resident: readonly ComponentRole[] | undefined, device: string): Partial<Record<ComponentRole, string>> | undefined {
  if (resident === undefined || device === 'cpu') return undefined;
  return Object.fromEntries(COMPONENT_ROLES.map((r) => [r, resident.includes(r) ? device : 'cpu']));
}
