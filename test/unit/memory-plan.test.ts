// The memory planner (lib/pipeline/memory-plan.ts, memory-estimate.ts): pure TypeScript, no addon.
//
// Full-size numbers used here (parameters, as tested on the meta device in models/tests and listed in
// ../shared/docs/streamingt2v-spec.md §5; fp16 weights = 2 bytes per parameter, TorchScript overhead ignored):
//   unet_stage1 / enhancer_unet   1,411,233,860  (ModelScope UNet3D / MS-Vid2Vid-XL; test_unet_cam_apm.py,
//                                                 test_aux_models.py) -> 2.82 GB fp16. The "1.7B" of the
//                                                 ModelScope repo name is UNet + text encoder + VAE together.
//   unet_stage2                   2,102,460,468  (base UNet with mergers and mixers 1,480,478,804 + CAM 621,981,664)
//   apm_image_encoder               654,376,704  (ViT-H/14 visual 632,076,800 + resampler 22,299,904)
//   text_encoder / enhancer_text    340,387,840  (test_aux_models.py)
//   vae_decoder / enhancer_vae_dec   49,490,199;  enhancer_vae_encoder 34,163,664
// Shapes: the official 16 × 256² for stages 1-2, 24-frame chunks of 720 × 1280 (letterboxed) for stage 3.
import { describe, expect, it } from 'vitest';

import { InvalidArgumentError } from '../../lib/errors.js';
import { readManifest } from '../../lib/models/manifest.js';
import type { ComponentRole } from '../../lib/models/manifest-types.js';
import {
  estimateActivation,
  FULL_SIZE_PARAMETERS,
  memoryPlanInputFromManifest,
  planMemory,
  runMemorySettings,
  STAGE_COMPONENTS,
  type ComponentFootprint,
  type MemoryPlan,
  type MemoryPlanInput,
} from '../../lib/pipeline/memory-plan.js';

const GiB = 2 ** 30;
const fp16 = (role: ComponentRole): ComponentFootprint => ({ weightBytes: FULL_SIZE_PARAMETERS[role] * 2, dtypeBytes: 2 });
const FULL_FP16 = Object.fromEntries(Object.keys(FULL_SIZE_PARAMETERS).map((r) => [r, fp16(r as ComponentRole)])) as Record<ComponentRole, ComponentFootprint>;
const PREVIEW_SHAPES = { stage1: { frames: 16, height: 256, width: 256 }, stage2: { frames: 16, height: 256, width: 256 } };
const FULL_SHAPES = { ...PREVIEW_SHAPES, stage3: { chunkFrames: 24, height: 720, width: 1280 } };
const full = (budget: number, withEnhancer = true): MemoryPlanInput => ({ components: FULL_FP16, shapes: withEnhancer ? FULL_SHAPES : PREVIEW_SHAPES, budget });
const ALL_ROLES = [...new Set(Object.values(STAGE_COMPONENTS).flat())];
const stagesOf = (p: MemoryPlan) => [p.stages.stage1, p.stages.stage2, p.stages.stage3].filter((s) => s !== undefined);

function expectInvalid(fn: () => unknown, message: string | RegExp): InvalidArgumentError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as InvalidArgumentError).code).toBe('ERR_INVALID_ARG');
    if (typeof message === 'string') expect((error as Error).message).toBe(message);
    else expect((error as Error).message).toMatch(message);
    return error as InvalidArgumentError;
  }
  throw new Error('expected an InvalidArgumentError');
}

describe('activation estimate (the documented formulas, full-size widths)', () => {
  it('stage-1 UNet, batch 2, 16 × 32² latents, fp16: features + spatial and temporal scores, by hand', () => {
    // features 32·2·16·32·32·320·2 = 671,088,640; scores (2·2+8)·(2·16·5·1024² + 2·1024·5·16²) = 2,044,723,200
    const shape = { batch: 2, frames: 16, height: 256, width: 256 };
    expect(estimateActivation('unet_stage1', fp16('unet_stage1'), shape)).toBe(2_715_811_840);
    // no chunking in the UNet3D: every term is linear in the batch, so the CFG split halves it exactly
    expect(estimateActivation('unet_stage1', fp16('unet_stage1'), { ...shape, batch: 1 })).toBe(2_715_811_840 / 2);
  });

  it('enhancer UNet, 24 × 90×160 latents: the chunked score term (2^28) does not halve with the batch', () => {
    const shape = { batch: 2, frames: 24, height: 720, width: 1280 };
    // features 32·2·24·14400·320·2 = 14,155,776,000; scores 12·(2^28 + 2·14400·5·24²)
    expect(estimateActivation('enhancer_unet', fp16('enhancer_unet'), shape)).toBe(14_155_776_000 + 12 * (2 ** 28 + 82_944_000));
    expect(estimateActivation('enhancer_unet', fp16('enhancer_unet'), { ...shape, batch: 1 })).toBe(7_077_888_000 + 12 * (2 ** 28 + 41_472_000));
  });

  it('a smaller model (fewer parameters per byte) gets a smaller width scale, never a larger one', () => {
    const shape = { batch: 2, frames: 16, height: 64, width: 64 };
    const big = estimateActivation('unet_stage1', fp16('unet_stage1'), shape);
    const small = estimateActivation('unet_stage1', { weightBytes: 4e6, dtypeBytes: 4 }, shape);
    const larger = estimateActivation('unet_stage1', { weightBytes: 4 * FULL_SIZE_PARAMETERS.unet_stage1 * 8, dtypeBytes: 2 }, shape);
    expect(small).toBeLessThan(big);
    expect(larger).toBe(big); // k is capped at 1: more parameters than full size do not widen the estimate
  });
});

describe('planMemory', () => {
  it('everything fits: all resident, nothing offloaded, CFG batched, 8-frame stage-3 VAE calls', () => {
    const plan = planMemory(full(1e12));
    expect(plan.policy).toBe('all-resident');
    for (const s of stagesOf(plan)) {
      expect(new Set(s.resident)).toEqual(new Set(ALL_ROLES));
      expect(s.offloaded).toEqual([]);
      expect(s.splitCfg).toBe(false);
      expect(s.peakBytes).toBe(s.weightBytes + s.carriedBytes + s.activationBytes);
    }
    expect(plan.stages.stage3?.vaeFramesPerCall).toBe(8);
    expect(plan.stages.stage1.vaeFramesPerCall).toBe(16);
    expect(plan.peakBytes).toBe(Math.max(...stagesOf(plan).map((s) => s.peakBytes)));
    expect(runMemorySettings(plan)).toEqual({ splitCfg: { stage1: false, stage2: false, stage3: false }, releaseCachedMemory: true });
    expect(runMemorySettings(undefined).releaseCachedMemory).toBe(false);
  });

  it('tight budget: only the running stage resident, the others on the CPU, CFG split where the batched UNet call does not fit', () => {
    const loose = planMemory(full(1e12, false));
    const plan = planMemory(full(loose.minimumBudget, false));
    expect(plan.policy).toBe('per-stage');
    expect(plan.stages.stage1.resident).toEqual(STAGE_COMPONENTS.stage1);
    expect(plan.stages.stage1.offloaded).toEqual(['apm_image_encoder', 'vae_encoder', 'unet_stage2']);
    expect(plan.stages.stage2.resident).toEqual(STAGE_COMPONENTS.stage2);
    expect(plan.stages.stage2.offloaded).toEqual(['text_encoder', 'unet_stage1']);
    // Stage 2 (4.2 GB UNet + 1.3 GB APM) is the tightest: its batched UNet call does not fit, the split one does.
    const s2 = plan.stages.stage2;
    const batched = estimateActivation('unet_stage2', fp16('unet_stage2'), { batch: 2, frames: 16, height: 256, width: 256 });
    expect(s2.weightBytes + s2.carriedBytes + batched).toBeGreaterThan(plan.budget);
    expect(s2.splitCfg).toBe(true);
    expect(plan.stages.stage1.splitCfg).toBe(false); // stage 1 (2.8 GB UNet) still fits batched
    for (const s of stagesOf(plan)) expect(s.peakBytes).toBeLessThanOrEqual(plan.budget);
    expect(runMemorySettings(plan).splitCfg).toEqual({ stage1: false, stage2: true, stage3: false });
    expect(plan.describe()).toMatch(/stage2: CFG split \(uncond, then cond\)/);
    expect(plan.describe()).toMatch(/on CUDA the offloaded components are moved to the CPU when a stage starts/);
    // what a run applies (lib/pipeline/placement.ts): each stage's residents, stage 3 absent without the enhancer
    expect(runMemorySettings(plan).placement).toEqual({ stage1: STAGE_COMPONENTS.stage1, stage2: STAGE_COMPONENTS.stage2, stage3: [] });
  });

  it('the stage-3 VAE calls shrink to stay within the UNet call, the video length limit is reported', () => {
    const plan = planMemory(full(24 * GiB));
    const s3 = plan.stages.stage3!;
    expect(s3.vaeFramesPerCall).toBeLessThan(8);
    expect(s3.vaeFramesPerCall).toBeGreaterThanOrEqual(1);
    expect(s3.peakComponent).toBe('enhancer_unet');
    expect(plan.stage3BytesPerFrame).toBe(8 * 4 * 90 * 160 * 4); // 8 float32 latents of 4×90×160 per frame
    expect(plan.maxEnhancedFrames).toBe(24 + Math.floor((plan.budget - s3.peakBytes) / plan.stage3BytesPerFrame));
  });

  it('impossible budget: a typed error naming the smallest budget that works, and that budget works', () => {
    const min = planMemory(full(1e12)).minimumBudget;
    const error = expectInvalid(() => planMemory(full(min - 1)), /^Expected at least (\d+) bytes \(.* GiB: the most frugal plan.*\) for `vramBudget` but received (\d+) \(.*\)$/);
    const [, named, received] = /at least (\d+) bytes.*received (\d+)/.exec(error.message)!;
    expect(Number(named)).toBe(min);
    expect(Number(received)).toBe(min - 1);
    const frugal = planMemory(full(min));
    expect(frugal.policy).toBe('per-stage');
    expect(frugal.peakBytes).toBe(min);
    expect(frugal.stages.stage3?.splitCfg).toBe(true);
  });

  it('the full-size model (fp16, 12.8 GB of weights) plans a feasible run in 24 GiB, keeping everything resident', () => {
    const weights = ALL_ROLES.reduce((sum, r) => sum + FULL_FP16[r].weightBytes, 0);
    expect(weights).toBeGreaterThan(12.7e9);
    expect(weights).toBeLessThan(12.9e9);
    const plan = planMemory(full(24 * GiB));
    expect(plan.policy).toBe('all-resident');
    expect(plan.peakBytes).toBeLessThanOrEqual(24 * GiB);
    expect(plan.stages.stage1.splitCfg).toBe(false);
    expect(plan.stages.stage2.splitCfg).toBe(false);
    expect(plan.stages.stage3?.splitCfg).toBe(true); // 720p × 24 frames: the batched enhancer call (17 GiB) would not fit
    // Weights dominate the preview stages at full size.
    expect(plan.stages.stage1.weightBytes).toBeGreaterThan(plan.stages.stage1.activationBytes);
    // A 16 GiB card needs per-stage residency; below ~13.6 GiB nothing fits (by this estimate).
    expect(planMemory(full(16 * GiB)).policy).toBe('per-stage');
    expect(() => planMemory(full(12 * GiB))).toThrow(InvalidArgumentError);
    // Without the enhancer, an 8 GiB card is enough.
    expect(planMemory(full(8 * GiB, false)).peakBytes).toBeLessThanOrEqual(8 * GiB);
  });

  it('rejects bad budgets and inputs with the uniform message', () => {
    for (const [value, shown] of [[Number.NaN, 'NaN of type number'], [-1, '-1 of type number'], [0, '0 of type number'], [Number.POSITIVE_INFINITY, 'Infinity of type number'], ['24GB', '"24GB"']] as const) {
      expectInvalid(() => planMemory({ ...full(1), budget: value as number }), `Expected a positive number of bytes for \`vramBudget\` but received ${shown}`);
    }
    const { unet_stage2: _, ...missing } = FULL_FP16;
    expectInvalid(() => planMemory({ components: missing, shapes: FULL_SHAPES, budget: 1e12 }), /^Expected a footprint for `components\.unet_stage2` but received undefined/);
    expectInvalid(() => planMemory({ ...full(1e12), shapes: { ...FULL_SHAPES, stage1: { frames: 0, height: 256, width: 256 } } }), 'Expected a positive integer for `shapes.stage1.frames` but received 0 of type number');
    expectInvalid(() => planMemory({ ...full(1e12), components: { ...FULL_FP16, vae_decoder: { weightBytes: -5, dtypeBytes: 2 } } }), 'Expected a finite number ≥ 0 for `components.vae_decoder.weightBytes` but received -5 of type number');
  });
});

describe('memoryPlanInputFromManifest (models/tiny)', () => {
  it('weights are the files\' sizes, scaled to the load dtype; shapes from the manifest defaults', async () => {
    const manifest = await readManifest('models/tiny', { verifyHashes: false });
    const input = memoryPlanInputFromManifest(manifest, { budget: 2 ** 30 });
    expect(input.components.unet_stage2).toEqual({ weightBytes: manifest.files['unet_stage2.pt']!.bytes, dtypeBytes: 4 });
    expect(input.shapes).toEqual({
      stage1: { frames: 16, height: 64, width: 64 },
      stage2: { frames: 16, height: 64, width: 64 },
      stage3: { chunkFrames: 24, height: 128, width: 128, vaeFrames: 8 },
    });
    const half = memoryPlanInputFromManifest(manifest, { budget: 2 ** 30, dtype: 'float16', enhancer: false });
    expect(half.components.unet_stage2).toEqual({ weightBytes: Math.ceil(manifest.files['unet_stage2.pt']!.bytes / 2), dtypeBytes: 2 });
    expect(half.components.enhancer_unet).toBeUndefined();
    expect(half.shapes.stage3).toBeUndefined();
    expect(planMemory(half).stages.stage3).toBeUndefined();
    expect(planMemory(half).maxEnhancedFrames).toBe(Number.POSITIVE_INFINITY);
  });
});
