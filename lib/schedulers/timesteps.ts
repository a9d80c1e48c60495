/**
 * Inference timestep selection (diffusers `set_timesteps`, Table 2 of Lin et al. 2023, arXiv 2305.08891),
 * reproduced to the integer: the numpy helpers below follow numpy's arithmetic (linspace = k·step + start,
 * arange = start + k·(first difference), round = half to even), because "981, 961, …, 1" must be exact.
 * Pure math, no tensors.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { TimestepSpacing } from './types.js';

/** Round half to even (numpy `round`, torch `round`). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** numpy `linspace(start, stop, num)` (endpoint included), value for value. */
export function npLinspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  if (num === 0) return out;
  const div = num - 1;
  const step = div > 0 ? (stop - start) / div : 0;
  for (let k = 0; k < num; k++) out[k] = k * step + start;
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** numpy `arange(start, stop, step)` for floats: length ceil((stop−start)/step), x_k = start + k·δ. */
export function npArange(start: number, stop: number, step: number): Float64Array {
  if (step === 0) throw new InvalidArgumentError('Expected a non-zero `step` for arange but received 0');
  const length = Math.max(0, Math.ceil((stop - start) / step));
  const out = new Float64Array(length);
  // numpy fills from the first two values: δ = (start + step) − start, which may differ from step by rounding.
  const delta = start + step - start;
  for (let k = 0; k < length; k++) out[k] = k === 0 ? start : start + k * delta;
  return out;
}

/** torch `arange(start, end, step)` (float): length ceil((end−start)/step), x_k = start + k·step. */
export function torchArange(start: number, end: number, step: number): Float64Array {
  if (step === 0) throw new InvalidArgumentError('Expected a non-zero `step` for arange but received 0');
  const length = Math.max(0, Math.ceil((end - start) / step));
  const out = new Float64Array(length);
  for (let k = 0; k < length; k++) out[k] = start + k * step;
  return out;
}

function checkSteps(numInferenceSteps: number, numTrainTimesteps: number): void {
  if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > numTrainTimesteps) {
    throw new InvalidArgumentError(
      `Expected an integer in [1, ${numTrainTimesteps}] for \`numInferenceSteps\` but received ${numInferenceSteps}`,
    );
  }
}

function toInt32(values: Float64Array, add: number): Int32Array {
  const out = new Int32Array(values.length);
  for (let k = 0; k < values.length; k++) out[k] = roundHalfEven(values[k]!) + add;
  return out;
}

function reversed(values: Float64Array): Float64Array {
  return values.slice().reverse();
}

/**
 * DDIM timesteps (diffusers 0.27 `DDIMScheduler.set_timesteps`), descending.
 * - `leading`: (0, r, 2r, …)·reversed + `stepsOffset`, r = N div n.
 * - `trailing`: round(arange(N, 0, −N/n)) − 1.
 * - `linspace`: round(linspace(0, N−1, n)), reversed.
 *
 * @example
 * ```ts
 * ddimTimesteps(1000, 50, 'leading', 1); // Int32Array [981, 961, …, 21, 1]
 * ```
 */
export function ddimTimesteps(
  numTrainTimesteps: number,
  numInferenceSteps: number,
  spacing: TimestepSpacing,
  stepsOffset = 0,
): Int32Array {
  checkSteps(numInferenceSteps, numTrainTimesteps);
  const n = numInferenceSteps;
  const N = numTrainTimesteps;
  switch (spacing) {
    case 'linspace':
      return toInt32(reversed(npLinspace(0, N - 1, n)), 0);
    case 'leading': {
      const ratio = Math.floor(N / n);
      const t = new Float64Array(n);
      for (let k = 0; k < n; k++) t[k] = (n - 1 - k) * ratio;
      return toInt32(t, stepsOffset);
    }
    case 'trailing':
      return toInt32(npArange(N, 0, -(N / n)), -1);
    default:
      throw new InvalidArgumentError(`Unknown timestep spacing ${String(spacing)}`);
  }
}

/**
 * DPM-Solver multistep timesteps (diffusers 0.27 `DPMSolverMultistepScheduler.set_timesteps`), descending.
 * These use n+1 points and drop the last (t = 0), unlike DDIM.
 * - `linspace`: round(linspace(0, T−1, n+1)) reversed, without the final 0.
 * - `leading`: (0, r, …, n·r) reversed without the final 0, + `stepsOffset`, r = T div (n+1).
 * - `trailing`: round(arange(T, 0, −N/n)) − 1.
 * T is the last usable timestep count (N unless `lambdaMinClipped` cut the tail).
 *
 * @example
 * ```ts
 * dpmSolverTimesteps(1000, 50, 'linspace'); // Int32Array [999, 979, 959, …, 20]
 * ```
 */
export function dpmSolverTimesteps(
  numTrainTimesteps: number,
  numInferenceSteps: number,
  spacing: TimestepSpacing,
  stepsOffset = 0,
  lastTimestep = numTrainTimesteps,
): Int32Array {
  checkSteps(numInferenceSteps, numTrainTimesteps);
  const n = numInferenceSteps;
  switch (spacing) {
    case 'linspace':
      return toInt32(reversed(npLinspace(0, lastTimestep - 1, n + 1)).subarray(0, n), 0);
    case 'leading': {
      const ratio = Math.floor(lastTimestep / (n + 1));
      const t = new Float64Array(n);
      for (let k = 0; k < n; k++) t[k] = (n - k) * ratio;
      return toInt32(t, stepsOffset);
    }
    case 'trailing':
      return toInt32(npArange(lastTimestep, 0, -(numTrainTimesteps / n)), -1);
    default:
      throw new InvalidArgumentError(`Unknown timestep spacing ${String(spacing)}`);
  }
}
