/**
 * dtype casting around a module call, for {@link TorchModule}'s `castIO` load option: floating
 * inputs are converted to the module's dtype before the call, floating outputs that are not
 * float32 are converted to float32 after it. Integer and bool tensors (token ids, masks) and
 * non-tensor values pass through untouched.
 * @internal
 */
import type { DType } from './binding.js';
import type { ModuleInput, ModuleOutput } from './module.js';
import { Tensor } from './tensor.js';

/** The floating-point dtypes (weights and activations); every other dtype passes through casts untouched. */
export const FLOATING_DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16', 'float64'];
const FLOATING: ReadonlySet<DType> = new Set<DType>(FLOATING_DTYPES);

/** True for float32, float16, bfloat16 and float64. */
export function isFloatingDType(dtype: unknown): dtype is DType {
  return typeof dtype === 'string' && FLOATING.has(dtype as DType);
}

/** Calls `fn` on every tensor inside a forward output (depth first). */
export function forEachOutputTensor(out: ModuleOutput, fn: (t: Tensor) => void): void {
  if (out instanceof Tensor) fn(out);
  else if (Array.isArray(out)) out.forEach((v) => forEachOutputTensor(v, fn));
  else if (out !== null && typeof out === 'object') Object.values(out).forEach((v) => forEachOutputTensor(v, fn));
}

async function castInput(value: ModuleInput, dtype: DType, temporaries: Tensor[]): Promise<ModuleInput> {
  if (value instanceof Tensor) {
    if (!FLOATING.has(value.dtype) || value.dtype === dtype) return value;
    const cast = await value.to({ dtype });
    temporaries.push(cast);
    return cast;
  }
  if (Array.isArray(value)) {
    const out: ModuleInput[] = [];
    for (const v of value) out.push(await castInput(v, dtype, temporaries));
    return out;
  }
  return value;
}

/**
 * Returns `inputs` with every floating tensor of another dtype replaced by a copy in `dtype`, except the
 * inputs named in `keep` (positional inputs are named by `names`, the schema's argument names).
 * The copies are pushed onto `temporaries`, which the caller disposes after the call (also when
 * this function throws part-way). Anything that is not an array or a plain object is returned
 * as is, for `forward` to reject.
 */
export async function castInputs(
  inputs: ModuleInput[] | Record<string, ModuleInput>,
  dtype: DType,
  temporaries: Tensor[],
  keep: ReadonlySet<string> = new Set(),
  names: readonly string[] = [],
): Promise<ModuleInput[] | Record<string, ModuleInput>> {
  if (Array.isArray(inputs)) {
    const out: ModuleInput[] = [];
    for (const [i, v] of inputs.entries()) out.push(keep.has(names[i] ?? '') ? v : await castInput(v, dtype, temporaries));
    return out;
  }
  if (inputs === null || typeof inputs !== 'object' || inputs instanceof Tensor) return inputs;
  const out: Record<string, ModuleInput> = {};
  for (const [k, v] of Object.entries(inputs)) out[k] = keep.has(k) ? v : await castInput(v, dtype, temporaries);
  return out;
}

/**
 * Converts every floating tensor in `out` that is not float32 to float32 and disposes the
 * original. On failure everything (converted copies and the whole original output) is disposed
 * before the error propagates, so nothing leaks.
 */
export async function castOutputToFloat32(out: ModuleOutput): Promise<ModuleOutput> {
  const pending: Tensor[] = [];
  forEachOutputTensor(out, (t) => {
    if (FLOATING.has(t.dtype) && t.dtype !== 'float32' && !pending.includes(t)) pending.push(t);
  });
  if (pending.length === 0) return out;
  const converted = new Map<Tensor, Tensor>();
  try {
    for (const t of pending) converted.set(t, await t.to({ dtype: 'float32' }));
  } catch (error) {
    for (const c of converted.values()) c.dispose();
    forEachOutputTensor(out, (t) => t.dispose());
    throw error;
  }
  const replace = (value: ModuleOutput): ModuleOutput => {
    if (value instanceof Tensor) return converted.get(value) ?? value;
    if (Array.isArray(value)) return value.map(replace);
    if (value !== null && typeof value === 'object') {
      const obj: Record<string, ModuleOutput> = {};
      for (const [k, v] of Object.entries(value)) obj[k] = replace(v);
      return obj;
    }
    return value;
  };
  const result = replace(out);
  for (const t of pending) t.dispose();
  return result;
}
