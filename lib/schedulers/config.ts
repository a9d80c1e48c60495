/**
 * Scheduler configs from the model manifest. The manifest carries the diffusers `scheduler_config.json`
 * object (snake_case) or the MS-Vid2Vid schedule parameters; these functions validate them, fill the
 * diffusers 0.27 defaults, and return frozen camelCase configs. Nothing here hard-codes a model.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type {
  BetaScheduleName,
  DdimConfig,
  DpmSolverConfig,
  FinalSigmasType,
  LogSnrCosineInterpConfig,
  PredictionType,
  TimestepSpacing,
} from './types.js';

type Raw = Readonly<Record<string, unknown>>;

const PREDICTION_TYPES: readonly PredictionType[] = ['epsilon', 'v_prediction', 'sample'];
const BETA_SCHEDULES: readonly BetaScheduleName[] = ['linear', 'scaled_linear', 'squaredcos_cap_v2'];
const SPACINGS: readonly TimestepSpacing[] = ['leading', 'trailing', 'linspace'];
const FINAL_SIGMAS: readonly FinalSigmasType[] = ['zero', 'sigma_min'];

/** Keys with no effect on sampling (metadata, or consumed by other diffusers schedulers). */
const IGNORED_KEYS = new Set([
  '_class_name', '_diffusers_version', '_use_default_values', 'skip_prk_steps', 'timestep_type',
  'interpolation_type', 'sigma_min', 'sigma_max',
  // DDIM-only keys that DPMSolverMultistepScheduler.from_config(<DDIM config>) receives and ignores.
  'set_alpha_to_one', 'clip_sample', 'clip_sample_range',
]);

/** Features we do not implement: accepted only at their diffusers default. */
const DEFAULT_ONLY: Readonly<Record<string, unknown>> = {
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1,
  rescale_betas_zero_snr: false,
  use_karras_sigmas: false,
  use_lu_lambdas: false,
  algorithm_type: 'dpmsolver++',
  solver_type: 'midpoint',
  variance_type: null,
  timestep_scaling: 1,
};

function pick<T>(raw: Raw, key: string, fallback: T, check: (v: unknown) => v is T, what: string): T {
  const v = raw[key];
  if (v === undefined) return fallback;
  if (!check(v)) throw new InvalidArgumentError(`Expected ${what} for \`${key}\` but received ${JSON.stringify(v)}`);
  return v;
}

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;
const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
const oneOf =
  <T extends string>(values: readonly T[]) =>
  (v: unknown): v is T =>
    typeof v === 'string' && (values as readonly string[]).includes(v);

function checkKeys(raw: Raw, own: readonly string[], kind: string): void {
  for (const [key, value] of Object.entries(raw)) {
    if (own.includes(key) || IGNORED_KEYS.has(key)) continue;
    if (key in DEFAULT_ONLY) {
      const def = DEFAULT_ONLY[key];
      if (value === def) continue;
      throw new InvalidArgumentError(`\`${key}\` = ${JSON.stringify(value)} is not supported by the ${kind} scheduler`);
    }
    throw new InvalidArgumentError(`Unknown ${kind} scheduler config key \`${key}\``);
  }
}

const COMMON_KEYS = [
  'num_train_timesteps', 'beta_schedule', 'beta_start', 'beta_end', 'trained_betas', 'prediction_type',
  'timestep_spacing', 'steps_offset',
];

function common(raw: Raw, defaultSpacing: TimestepSpacing) {
  const trained = raw['trained_betas'];
  if (trained !== undefined && trained !== null && !(Array.isArray(trained) && trained.every(isNumber))) {
    throw new InvalidArgumentError('Expected an array of numbers or null for `trained_betas`');
  }
  const numTrainTimesteps = pick(raw, 'num_train_timesteps', 1000, isInt, 'a positive integer');
  if (numTrainTimesteps < 2) throw new InvalidArgumentError('Expected `num_train_timesteps` ≥ 2');
  return {
    numTrainTimesteps,
    betaSchedule: pick(raw, 'beta_schedule', 'linear', oneOf(BETA_SCHEDULES), `one of ${BETA_SCHEDULES.join(', ')}`),
    betaStart: pick(raw, 'beta_start', 0.0001, isNumber, 'a number'),
    betaEnd: pick(raw, 'beta_end', 0.02, isNumber, 'a number'),
    trainedBetas: Array.isArray(trained) ? Object.freeze([...(trained as number[])]) : undefined,
    predictionType: pick(raw, 'prediction_type', 'epsilon', oneOf(PREDICTION_TYPES), `one of ${PREDICTION_TYPES.join(', ')}`),
    timestepSpacing: pick(raw, 'timestep_spacing', defaultSpacing, oneOf(SPACINGS), `one of ${SPACINGS.join(', ')}`),
    stepsOffset: pick(raw, 'steps_offset', 0, isInt, 'a non-negative integer'),
  };
}

/**
 * A frozen {@link DdimConfig} from a diffusers `DDIMScheduler` config object, with diffusers 0.27 defaults.
 *
 * @example
 * ```ts
 * // damo-vilab/text-to-video-ms-1.7b scheduler/scheduler_config.json (stage 2)
 * const cfg = ddimConfigFromDiffusers({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012,
 *   clip_sample: false, set_alpha_to_one: false, steps_offset: 1, num_train_timesteps: 1000 });
 * cfg.timestepSpacing; // 'leading' (the DDIM default)
 * ```
 */
export function ddimConfigFromDiffusers(raw: Raw): DdimConfig {
  checkKeys(raw, [...COMMON_KEYS], 'DDIM');
  return Object.freeze({
    ...common(raw, 'leading'),
    setAlphaToOne: pick(raw, 'set_alpha_to_one', true, isBool, 'a boolean'),
    clipSample: pick(raw, 'clip_sample', true, isBool, 'a boolean'),
    clipSampleRange: pick(raw, 'clip_sample_range', 1, isNumber, 'a number'),
  });
}

/**
 * A frozen {@link DpmSolverConfig} from a diffusers config object, as `DPMSolverMultistepScheduler.from_config`
 * would read it in diffusers 0.27 (DDIM-only keys are ignored, missing keys take the DPM-Solver defaults:
 * order 2, `linspace` spacing, `lower_order_final`, `final_sigmas_type` zero). Stage 1 passes the DDIM config.
 *
 * @example
 * ```ts
 * const cfg = dpmSolverConfigFromDiffusers(ddimSchedulerJson); // spec §1.4
 * cfg.timestepSpacing; // 'linspace' (the DDIM config has no spacing key)
 * ```
 */
export function dpmSolverConfigFromDiffusers(raw: Raw): DpmSolverConfig {
  const own = ['solver_order', 'lower_order_final', 'euler_at_final', 'final_sigmas_type', 'lambda_min_clipped'];
  checkKeys(raw, [...COMMON_KEYS, ...own], 'DPM-Solver');
  const solverOrder = pick(raw, 'solver_order', 2, isInt, 'an integer');
  if (solverOrder !== 1 && solverOrder !== 2) throw new InvalidArgumentError(`\`solver_order\` ${solverOrder} is not supported (1 or 2)`);
  const lambdaRaw = raw['lambda_min_clipped'];
  const lambdaMinClipped =
    lambdaRaw === undefined || lambdaRaw === null || lambdaRaw === '-inf' ? -Infinity : (lambdaRaw as number);
  if (typeof lambdaMinClipped !== 'number' || Number.isNaN(lambdaMinClipped)) {
    throw new InvalidArgumentError(`Expected a number for \`lambda_min_clipped\` but received ${JSON.stringify(lambdaRaw)}`);
  }
  return Object.freeze({
    ...common(raw, 'linspace'),
    solverOrder,
    lowerOrderFinal: pick(raw, 'lower_order_final', true, isBool, 'a boolean'),
    eulerAtFinal: pick(raw, 'euler_at_final', false, isBool, 'a boolean'),
    finalSigmasType: pick(raw, 'final_sigmas_type', 'zero', oneOf(FINAL_SIGMAS), 'zero or sigma_min'),
    lambdaMinClipped,
  });
}

/**
 * A frozen {@link LogSnrCosineInterpConfig} (MS-Vid2Vid-XL). Keys are camelCase or the modelscope names
 * (`num_timesteps`/`n`, `scale_min`, `scale_max`, `logsnr_min`, `logsnr_max`, `zero_terminal_snr`,
 * `prediction_type` with modelscope's `v`/`eps`/`x0` accepted).
 *
 * @example
 * ```ts
 * logSnrCosineInterpConfig({ scale_min: 2, scale_max: 4, zero_terminal_snr: true, prediction_type: 'v' });
 * ```
 */
export function logSnrCosineInterpConfig(raw: Raw = {}): LogSnrCosineInterpConfig {
  const get = (names: readonly string[]): unknown => names.map((n) => raw[n]).find((v) => v !== undefined);
  const num = (names: readonly string[], fallback: number): number => {
    const v = get(names);
    if (v === undefined) return fallback;
    if (!isNumber(v)) throw new InvalidArgumentError(`Expected a number for \`${names[0]}\` but received ${JSON.stringify(v)}`);
    return v;
  };
  const aliases: Readonly<Record<string, PredictionType>> = { v: 'v_prediction', eps: 'epsilon', x0: 'sample' };
  const p = get(['predictionType', 'prediction_type']) ?? 'v_prediction';
  const predictionType = typeof p === 'string' ? (aliases[p] ?? p) : p;
  if (!oneOf(PREDICTION_TYPES)(predictionType)) {
    throw new InvalidArgumentError(`Expected a prediction type for \`prediction_type\` but received ${JSON.stringify(p)}`);
  }
  const zts = get(['zeroTerminalSnr', 'zero_terminal_snr']) ?? true;
  if (!isBool(zts)) throw new InvalidArgumentError('Expected a boolean for `zero_terminal_snr`');
  const n = num(['numTrainTimesteps', 'num_timesteps', 'n'], 1000);
  if (!Number.isInteger(n) || n < 2) throw new InvalidArgumentError('Expected an integer ≥ 2 for `num_timesteps`');
  return Object.freeze({
    numTrainTimesteps: n,
    logsnrMin: num(['logsnrMin', 'logsnr_min'], -15),
    logsnrMax: num(['logsnrMax', 'logsnr_max'], 15),
    scaleMin: num(['scaleMin', 'scale_min'], 2),
    scaleMax: num(['scaleMax', 'scale_max'], 4),
    zeroTerminalSnr: zts,
    predictionType,
  });
}
