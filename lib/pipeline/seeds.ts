/**
 * The seeds of a run's noise streams, all derived from its one `seed` (distinct streams, reproducible).
 * @module
 */

/** Stream `k` of `seed`: a 63-bit mix (golden-ratio and splitmix64 multipliers). */
function mix(seed: number, k: number): bigint {
  return (BigInt(seed) * 0x9e3779b97f4a7c15n + BigInt(k) * 0xbf58476d1ce4e5b9n) & 0x7fffffffffffffffn;
}

/** Derives the stage-1, stage-2, stage-3 and blending seeds from the run seed. */
export function derivedSeeds(seed: number): { stage1: number; stage2: bigint; stage3: bigint; blend: bigint } {
  return { stage1: seed, stage2: mix(seed, 2), stage3: mix(seed, 3), blend: mix(seed, 4) };
}

/**
 * The stage-1 seed of the run's start `attempt`: the run's own for the first (the official pipeline's), then
 * distinct derived ones (streams 17, 18, ...) for the cut guard's retries at the handover.
 */
export function stage1Seed(seed: number, attempt: number): number | bigint {
  return attempt === 0 ? derivedSeeds(seed).stage1 : mix(seed, 16 + attempt);
}
