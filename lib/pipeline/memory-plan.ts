/**
 * Device-memory planning for a `vramBudget` (issue 7): from the manifest's weight sizes and the stage
 * shapes, decide before anything runs which components stay on the device, which would wait on the
 * CPU between stages, whether each stage splits its CFG batch into two calls, and how many frames
 * each stage-3 VAE call takes; report the estimated peak of every stage; and refuse a budget that
 * even the most frugal plan exceeds, naming the smallest one that would do.
 *
 * Pure TypeScript (no native calls). The activation figures are ESTIMATES from conservative formulas
 * (memory-estimate.ts, {@link estimateActivation}), not measurements; weights are the files' sizes.
 * Offloading is applied by placement.ts (per-stage policy, CUDA only).
 *
 * @example
 * ```ts
 * const manifest = await readManifest('/models/st2v', { verifyHashes: false });
 * const plan = planMemory(memoryPlanInputFromManifest(manifest, { budget: 24e9, dtype: 'float16' }));
 * console.log(plan.describe());
 * plan.stages.stage3?.splitCfg; // true: the enhancer runs uncond and cond as two calls
 * ```
 * @module
 */
import type { DType } from '../binding.js';
import { InvalidArgumentError } from '../errors.js';
import type { ComponentRole, ModelManifest } from '../models/manifest-types.js';
import { invalid } from './options.js';
import { estimateActivation, estimateCarried, estimateEnhanceBytesPerFrame, type CallShape, type ComponentFootprint } from './memory-estimate.js';

export { estimateActivation, FULL_SIZE_PARAMETERS, type CallShape, type ComponentFootprint } from './memory-estimate.js';

/** The stages a plan covers. */
export type PlanStage = 'stage1' | 'stage2' | 'stage3';

/** The components each stage calls, in call order (generate-frames.ts). */
export const STAGE_COMPONENTS: Readonly<Record<PlanStage, readonly ComponentRole[]>> = {
  stage1: ['text_encoder', 'unet_stage1', 'vae_decoder'],
  stage2: ['apm_image_encoder', 'vae_encoder', 'unet_stage2', 'vae_decoder'],
  stage3: ['enhancer_vae_encoder', 'enhancer_text_encoder', 'enhancer_unet', 'enhancer_vae_decoder'],
};

/** Stage shapes in pixels (latents are pixels / 8 with 4 channels). */
export interface MemoryPlanShapes {
  /** Stage 1: frames and size of the first video (official 16 × 256²). */
  readonly stage1: { readonly frames: number; readonly height: number; readonly width: number };
  /** Stage 2: frames and size of one window (official 16 × 256²). */
  readonly stage2: { readonly frames: number; readonly height: number; readonly width: number };
  /**
   * Stage 3 (omit when the enhancer is not loaded): latent frames per chunk, output size (the
   * letterboxed canvas, official 720 × 1280) and the largest number of frames per VAE call wanted
   * (`enhance.encodeBatch`/`decodeBatch`, default 8; the plan may lower it).
   */
  readonly stage3?: { readonly chunkFrames: number; readonly height: number; readonly width: number; readonly vaeFrames?: number } | undefined;
}

/** Input of {@link planMemory}. */
export interface MemoryPlanInput {
  /** Footprint of every component the stages use (see {@link STAGE_COMPONENTS}). */
  readonly components: Readonly<Partial<Record<ComponentRole, ComponentFootprint>>>;
  readonly shapes: MemoryPlanShapes;
  /** Device bytes the run may use (the `vramBudget` option). Example: 24 * 2 ** 30. */
  readonly budget: number;
}

/** The plan of one stage. */
export interface StageMemoryPlan {
  readonly stage: PlanStage;
  /** Components this stage calls. */
  readonly components: readonly ComponentRole[];
  /** Components on the device while this stage runs. */
  readonly resident: readonly ComponentRole[];
  /** Components that would wait on the CPU while this stage runs (empty when all stay resident). */
  readonly offloaded: readonly ComponentRole[];
  /** Run the CFG batch as two calls of batch 1 (uncond, then cond) instead of one call of batch 2. */
  readonly splitCfg: boolean;
  /** Frames per VAE call: the whole window in stages 1–2 (fixed), chosen for stage 3. */
  readonly vaeFramesPerCall: number;
  /** Bytes of the resident weights. */
  readonly weightBytes: number;
  /** Estimated bytes of the stage's tensors besides the network calls (latents, sampler state, frames). */
  readonly carriedBytes: number;
  /** Estimated activation bytes of the costliest call. */
  readonly activationBytes: number;
  /** weightBytes + carriedBytes + activationBytes. */
  readonly peakBytes: number;
  /** The component whose call sets the peak. */
  readonly peakComponent: ComponentRole;
}

/** What {@link planMemory} decided. Plain data plus {@link MemoryPlan.describe}. */
export interface MemoryPlan {
  readonly budget: number;
  /** 'all-resident': every component stays on the device; 'per-stage': only the running stage's. */
  readonly policy: 'all-resident' | 'per-stage';
  readonly stages: { readonly stage1: StageMemoryPlan; readonly stage2: StageMemoryPlan; readonly stage3?: StageMemoryPlan | undefined };
  /** The largest stage peak. */
  readonly peakBytes: number;
  /** The smallest budget any plan fits: per-stage residency, CFG split, one frame per stage-3 VAE call. */
  readonly minimumBudget: number;
  /** Stage 3 holds the whole video's latents on the device: estimated bytes per video frame (0 without stage 3). */
  readonly stage3BytesPerFrame: number;
  /** Longest video whose stage 3 fits the budget by this estimate (Infinity without stage 3). */
  readonly maxEnhancedFrames: number;
  /** A multi-line human-readable report. */
  describe(): string;
}

/** What generateFrames applies from a plan. @internal */
export interface RunMemorySettings {
  readonly splitCfg: Readonly<Record<PlanStage, boolean>>;
  /** Return the CUDA caching allocator's free blocks to the driver between stages. */
  readonly releaseCachedMemory: boolean;
  /** Per-stage residency to apply (policy 'per-stage' only): the components on the device while each stage runs. */
  readonly placement?: Readonly<Record<PlanStage, readonly ComponentRole[]>> | undefined;
}

/** No plan: batched CFG everywhere, no cache release. @internal */
export const NO_MEMORY_PLAN: RunMemorySettings = { splitCfg: { stage1: false, stage2: false, stage3: false }, releaseCachedMemory: false };

/** The settings a run applies from `plan` (or none). @internal */
export function runMemorySettings(plan: MemoryPlan | undefined): RunMemorySettings {
  if (plan === undefined) return NO_MEMORY_PLAN;
  const s = plan.stages;
  const placement = plan.policy === 'per-stage' ? { stage1: s.stage1.resident, stage2: s.stage2.resident, stage3: s.stage3?.resident ?? [] } : undefined;
  return { splitCfg: { stage1: s.stage1.splitCfg, stage2: s.stage2.splitCfg, stage3: s.stage3?.splitCfg ?? false }, releaseCachedMemory: true, placement };
}

/** The per-stage choices a plan makes. */
interface StageChoice {
  splitCfg: boolean;
  vaeFrames: number;
}

function stageShape(input: MemoryPlanInput, stage: PlanStage): { frames: number; height: number; width: number } {
  const s = input.shapes;
  if (stage === 'stage3') return { frames: s.stage3!.chunkFrames, height: s.stage3!.height, width: s.stage3!.width };
  return s[stage];
}

/** Carried (non-activation) bytes of a stage; stage 3 counts one chunk's worth of video frames. */
function carried(input: MemoryPlanInput, stage: PlanStage): number {
  const { frames, height, width } = stageShape(input, stage);
  return estimateCarried(stage === 'stage3' ? 'enhance' : 'generate', frames, height, width);
}

/** Activation bytes of each call of `stage` under `choice`, with the component making it. */
function stageCalls(input: MemoryPlanInput, stage: PlanStage, choice: StageChoice): { role: ComponentRole; bytes: number }[] {
  const { frames, height, width } = stageShape(input, stage);
  return STAGE_COMPONENTS[stage].map((role) => {
    const fp = input.components[role]!;
    const isVae = role.includes('vae');
    const isUnet = role.includes('unet');
    const shape: CallShape = {
      batch: isUnet && choice.splitCfg ? 1 : 2,
      frames: isVae ? choice.vaeFrames : frames,
      height: role === 'apm_image_encoder' ? 224 : height,
      width: role === 'apm_image_encoder' ? 224 : width,
    };
    return { role, bytes: estimateActivation(role, fp, shape) };
  });
}

function evaluate(input: MemoryPlanInput, stage: PlanStage, resident: readonly ComponentRole[], choice: StageChoice): StageMemoryPlan {
  const weightBytes = resident.reduce((sum, r) => sum + input.components[r]!.weightBytes, 0);
  const calls = stageCalls(input, stage, choice);
  const top = calls.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  const carriedBytes = carried(input, stage);
  const components = STAGE_COMPONENTS[stage];
  return {
    stage,
    components,
    resident,
    // Applied by lib/pipeline/placement.ts (TorchModule.moveTo) under the 'per-stage' policy.
    offloaded: allRoles(input).filter((r) => !resident.includes(r)),
    splitCfg: choice.splitCfg,
    vaeFramesPerCall: choice.vaeFrames,
    weightBytes,
    carriedBytes,
    activationBytes: top.bytes,
    peakBytes: weightBytes + carriedBytes + top.bytes,
    peakComponent: top.role,
  };
}

function stagesOf(input: MemoryPlanInput): PlanStage[] {
  return input.shapes.stage3 === undefined ? ['stage1', 'stage2'] : ['stage1', 'stage2', 'stage3'];
}

function allRoles(input: MemoryPlanInput): ComponentRole[] {
  return [...new Set(stagesOf(input).flatMap((s) => STAGE_COMPONENTS[s]))];
}

/** The stage's default (window) VAE frames, or the wanted stage-3 frames per call. */
function wantedVaeFrames(input: MemoryPlanInput, stage: PlanStage): number {
  return stage === 'stage3' ? (input.shapes.stage3!.vaeFrames ?? 8) : input.shapes[stage].frames;
}

/**
 * The cheapest-to-run choice for `stage` that fits: batched CFG unless the batched UNet call does not
 * fit, then split. Stage-3 VAE calls take the most frames (≤ wanted) whose activations stay within the
 * UNet call's (so they never set the peak and leave the most room for the video's latents) and fit.
 * Undefined when nothing fits.
 */
function chooseStage(input: MemoryPlanInput, stage: PlanStage, resident: readonly ComponentRole[]): StageMemoryPlan | undefined {
  const unet = STAGE_COMPONENTS[stage].find((r) => r.includes('unet'))!;
  const callBytes = (choice: StageChoice, match: (r: ComponentRole) => boolean) =>
    Math.max(...stageCalls(input, stage, choice).filter((c) => match(c.role)).map((c) => c.bytes));
  let vaeFrames = wantedVaeFrames(input, stage);
  const batched = evaluate(input, stage, resident, { splitCfg: false, vaeFrames });
  const splitCfg = batched.weightBytes + batched.carriedBytes + callBytes({ splitCfg: false, vaeFrames }, (r) => r === unet) > input.budget;
  if (stage === 'stage3') {
    const unetBytes = callBytes({ splitCfg, vaeFrames }, (r) => r === unet);
    const room = input.budget - batched.weightBytes - batched.carriedBytes;
    const vae = (r: ComponentRole) => r.includes('vae');
    while (vaeFrames > 1 && callBytes({ splitCfg, vaeFrames }, vae) > Math.min(room, unetBytes)) vaeFrames--;
  }
  const plan = evaluate(input, stage, resident, { splitCfg, vaeFrames });
  return plan.peakBytes <= input.budget ? plan : undefined;
}

function checkInput(input: MemoryPlanInput): void {
  if (input === null || typeof input !== 'object') invalid('a memory plan input object', 'input', input);
  if (input.shapes === null || typeof input.shapes !== 'object') invalid('stage shapes', 'shapes', input.shapes);
  const b = input.budget;
  if (typeof b !== 'number' || !Number.isFinite(b) || b <= 0) invalid('a positive number of bytes', 'vramBudget', b);
  for (const role of allRoles(input)) {
    const fp = input.components?.[role];
    if (fp === undefined) throw new InvalidArgumentError(`Expected a footprint for \`components.${role}\` but received undefined (stage ${stagesOf(input).find((s) => STAGE_COMPONENTS[s].includes(role))} uses it)`);
    if (!(fp.weightBytes >= 0 && Number.isFinite(fp.weightBytes))) invalid('a finite number ≥ 0', `components.${role}.weightBytes`, fp.weightBytes);
    if (!(fp.dtypeBytes > 0 && Number.isFinite(fp.dtypeBytes))) invalid('a positive number', `components.${role}.dtypeBytes`, fp.dtypeBytes);
  }
  for (const stage of stagesOf(input)) {
    const { frames, height, width } = stageShape(input, stage);
    for (const [name, v] of [['frames', frames], ['height', height], ['width', width]] as const) {
      if (!Number.isInteger(v) || v < 1) invalid('a positive integer', `shapes.${stage}.${name}`, v);
    }
  }
  const vf = input.shapes.stage3?.vaeFrames;
  if (vf !== undefined && (!Number.isInteger(vf) || vf < 1)) invalid('a positive integer', 'shapes.stage3.vaeFrames', vf);
}

/** "1.50 GiB" / "312.0 MiB" / "4.0 KiB". */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const [unit, name] = bytes >= 2 ** 30 ? [2 ** 30, 'GiB'] : bytes >= 2 ** 20 ? [2 ** 20, 'MiB'] : [2 ** 10, 'KiB'];
  return `${(bytes / unit).toFixed(unit === 2 ** 30 ? 2 : 1)} ${name}`;
}

/**
 * Plans device memory for a budget (see the module comment). Policy, cheapest to run first:
 * 1. all components resident, if every stage fits with the activation estimate (each stage splits
 *    its CFG batch only when its batched UNet call would not fit);
 * 2. otherwise only the running stage's components resident, the others on the CPU (the same
 *    per-stage CFG rule);
 * 3. otherwise {@link InvalidArgumentError}: "Expected at least <minimum> … for `vramBudget` but received …".
 * Stage-3 VAE calls take the most frames (≤ the wanted `vaeFrames`, default 8) whose activations fit and
 * stay within the enhancer UNet call's. Stage-1/2 VAE calls decode the whole window (not plannable).
 *
 * @example
 * ```ts
 * const plan = planMemory({ components, shapes, budget: 24 * 2 ** 30 });
 * plan.policy;                 // 'all-resident'
 * plan.stages.stage1.splitCfg; // false
 * ```
 */
export function planMemory(input: MemoryPlanInput): MemoryPlan {
  checkInput(input);
  const stages = stagesOf(input);
  const everything = allRoles(input);
  // Stage-1/2 VAE calls always take the whole window; only stage 3's can shrink.
  const frugal = stages.map((s) => evaluate(input, s, STAGE_COMPONENTS[s], { splitCfg: true, vaeFrames: s === 'stage3' ? 1 : wantedVaeFrames(input, s) }).peakBytes);
  const minimumBudget = Math.max(...frugal);
  let policy: MemoryPlan['policy'] = 'all-resident';
  let planned = stages.map((s) => chooseStage(input, s, everything));
  if (planned.some((p) => p === undefined)) {
    policy = 'per-stage';
    planned = stages.map((s) => chooseStage(input, s, STAGE_COMPONENTS[s]));
  }
  if (planned.some((p) => p === undefined)) {
    throw new InvalidArgumentError(
      `Expected at least ${minimumBudget} bytes (${formatBytes(minimumBudget)}: the most frugal plan, per-stage residency, split CFG, ` +
        `1 frame per stage-3 VAE call; activations are estimates) for \`vramBudget\` but received ${input.budget} (${formatBytes(input.budget)})`,
    );
  }
  const [stage1, stage2, stage3] = planned as StageMemoryPlan[];
  const perFrame = stage3 === undefined ? 0 : estimateEnhanceBytesPerFrame(input.shapes.stage3!.height, input.shapes.stage3!.width);
  const maxEnhancedFrames = stage3 === undefined ? Number.POSITIVE_INFINITY : input.shapes.stage3!.chunkFrames + Math.floor((input.budget - stage3.peakBytes) / perFrame);
  const data = {
    budget: input.budget,
    policy,
    stages: { stage1: stage1!, stage2: stage2!, ...(stage3 === undefined ? {} : { stage3 }) },
    peakBytes: Math.max(...planned.map((p) => p!.peakBytes)),
    minimumBudget,
    stage3BytesPerFrame: perFrame,
    maxEnhancedFrames,
  };
  return Object.freeze({ ...data, describe: () => describePlan(data) });
}

function describePlan(p: Omit<MemoryPlan, 'describe'>): string {
  const gib = formatBytes;
  const lines = [
    `vramBudget ${gib(p.budget)}: ${p.policy === 'all-resident' ? 'all components resident' : 'only the running stage\'s components resident'}; ` +
      `estimated peak ${gib(p.peakBytes)} (the smallest workable budget is ${gib(p.minimumBudget)})`,
  ];
  for (const s of [p.stages.stage1, p.stages.stage2, p.stages.stage3]) {
    if (s === undefined) continue;
    const off = s.offloaded.length === 0 ? '' : `; on the CPU: ${s.offloaded.join(', ')}`;
    lines.push(
      `  ${s.stage}: CFG ${s.splitCfg ? 'split (uncond, then cond)' : 'batched'}; ${s.vaeFramesPerCall} frame(s) per VAE call; ` +
        `peak ${gib(s.peakBytes)} = weights ${gib(s.weightBytes)} + ${s.peakComponent} ${gib(s.activationBytes)} + other ${gib(s.carriedBytes)}${off}`,
    );
  }
  if (p.stages.stage3 !== undefined) {
    lines.push(`  stage 3 also holds ${gib(p.stage3BytesPerFrame)} per video frame on the device: up to ${p.maxEnhancedFrames} enhanced frames fit`);
  }
  if (p.policy === 'per-stage') lines.push('  on CUDA the offloaded components are moved to the CPU when a stage starts and back when they are needed (weights cross PCIe at every stage change)');
  lines.push('  activations are conservative estimates (lib/pipeline/memory-estimate.ts), weights are the files\' sizes');
  return lines.join('\n');
}

const DTYPE_BYTES: Readonly<Partial<Record<DType, number>>> = { float64: 8, float32: 4, float16: 2, bfloat16: 2 };

/**
 * The planner input for a model directory: each component's file size (`manifest.files`) scaled from
 * its stored dtype to its load dtype (`dtypes[role]`, else `dtype`; default: as stored), and the stage shapes
 * from the manifest defaults (stage 3 on the letterboxed canvas, the larger layout).
 *
 * @example
 * ```ts
 * const input = memoryPlanInputFromManifest(manifest, { budget: 8 * 2 ** 30, enhancer: false });
 * ```
 */
export function memoryPlanInputFromManifest(
  manifest: ModelManifest,
  options: {
    budget: number;
    dtype?: DType | undefined;
    /** Per-role load dtypes (the pipeline's resolved compute dtypes), winning over `dtype`. */
    dtypes?: Partial<Record<ComponentRole, DType>> | undefined;
    enhancer?: boolean | undefined;
    vaeFrames?: number | undefined;
  },
): MemoryPlanInput {
  const enhancer = options.enhancer ?? true;
  const roles = [...STAGE_COMPONENTS.stage1, ...STAGE_COMPONENTS.stage2, ...(enhancer ? STAGE_COMPONENTS.stage3 : [])];
  const components: Partial<Record<ComponentRole, ComponentFootprint>> = {};
  for (const role of roles) {
    const entry = manifest.components[role];
    if (entry === undefined) throw new InvalidArgumentError(`${manifest.path} has no \`${role}\` component`);
    const stored = DTYPE_BYTES[entry.dtype] ?? 4;
    const dtype = options.dtypes?.[role] ?? options.dtype;
    const target = dtype === undefined ? stored : (DTYPE_BYTES[dtype] ?? stored);
    const bytes = manifest.files[entry.file]?.bytes ?? entry.parameters * stored;
    components[role] = { weightBytes: Math.ceil((bytes * target) / stored), dtypeBytes: target };
  }
  const d = manifest.defaults;
  return {
    components,
    budget: options.budget,
    shapes: {
      stage1: { frames: d.stage1.numFrames, height: d.stage1.height, width: d.stage1.width },
      stage2: { frames: d.stage2.windowFrames, height: d.stage2.height, width: d.stage2.width },
      stage3: enhancer
        ? { chunkFrames: d.stage3.chunkFrames, height: d.stage3.height, width: Math.max(d.stage3.canvasWidth, d.stage3.width), vaeFrames: options.vaeFrames ?? 8 }
        : undefined,
    },
  };
}
