/**
 * A small seeded PRNG for the randomized-blending cuts (spec §4.2): PCG32 (O'Neill 2014, "PCG-XSH-RR 64/32":
 * a 64-bit LCG state, output = rotate(((s ≫ 18) ⊕ s) ≫ 27, s ≫ 59)). Pure TypeScript on BigInt, fully
 * deterministic across platforms, and its whole state (two 64-bit words) is serialisable for resume.
 *
 * The official code draws the cuts from Python's global `random` (Mersenne Twister, seeded 666 then 33,
 * spec §4.2); those draws depend on unrelated consumers of the global state, so we do not try to reproduce
 * them bit for bit: only the law U{0..O−1} matters.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';

const MASK64 = (1n << 64n) - 1n;
const MULTIPLIER = 6364136223846793005n;

/** The serialisable state of a {@link Pcg32}: two unsigned 64-bit integers as decimal strings (JSON-safe). */
export interface Pcg32State {
  /** LCG state, decimal string of an unsigned 64-bit integer. */
  readonly state: string;
  /** LCG increment (odd), decimal string of an unsigned 64-bit integer. */
  readonly increment: string;
}

function toU64(value: number | bigint, option: string): bigint {
  if (typeof value === 'number' && (!Number.isSafeInteger(value) || value < 0)) {
    throw new InvalidArgumentError(`Expected a non-negative safe integer or bigint for \`${option}\` but received ${value}`);
  }
  if (typeof value !== 'number' && typeof value !== 'bigint') {
    throw new InvalidArgumentError(`Expected a non-negative safe integer or bigint for \`${option}\` but received ${String(value)}`);
  }
  const v = BigInt(value);
  if (v < 0n) throw new InvalidArgumentError(`Expected a non-negative safe integer or bigint for \`${option}\` but received ${v}`);
  return v & MASK64;
}

/**
 * PCG32 generator. `seed` picks the position, `stream` picks one of 2^63 independent sequences.
 *
 * @example
 * ```ts
 * const rng = new Pcg32(33);
 * rng.uniformInt(8);            // an integer in [0, 8)
 * const saved = rng.getState(); // JSON-safe; later: Pcg32.fromState(saved) continues identically
 * ```
 */
export class Pcg32 {
  #state = 0n;
  #increment = 1n;

  /**
   * @param seed - initial state, a non-negative integer or bigint (mod 2^64). Default 0.
   * @param stream - sequence selector, a non-negative integer or bigint. Default 0.
   */
  constructor(seed: number | bigint = 0, stream: number | bigint = 0) {
    const s = toU64(seed, 'seed');
    this.#increment = ((toU64(stream, 'stream') << 1n) | 1n) & MASK64;
    this.#state = 0n;
    this.nextUint32();
    this.#state = (this.#state + s) & MASK64;
    this.nextUint32();
  }

  /** The next 32-bit output, an integer in [0, 2^32). */
  nextUint32(): number {
    const old = this.#state;
    this.#state = (old * MULTIPLIER + this.#increment) & MASK64;
    const xorshifted = Number((((old >> 18n) ^ old) >> 27n) & 0xffffffffn);
    const rot = Number(old >> 59n);
    return ((xorshifted >>> rot) | (xorshifted << ((32 - rot) & 31))) >>> 0;
  }

  /**
   * An unbiased integer in [0, n) by rejection (at most 2^32 mod n of the 2^32 outputs are rejected).
   * `n` must be an integer in [1, 2^32]; n = 1 still consumes one output so that the number of draws
   * does not depend on the value of n.
   */
  uniformInt(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) {
      throw new InvalidArgumentError(`Expected an integer in [1, 2^32] for \`n\` but received ${n}`);
    }
    const limit = 2 ** 32 - (2 ** 32 % n); // accept x < limit: a multiple of n outputs
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return x % n;
    }
  }

  /** A copy of the current state (see {@link Pcg32State}). */
  getState(): Pcg32State {
    return { state: this.#state.toString(), increment: this.#increment.toString() };
  }

  /** Restores a state from {@link getState}; the sequence continues exactly where it was saved. */
  setState(saved: Pcg32State): void {
    let state: bigint;
    let increment: bigint;
    try {
      state = BigInt(saved.state);
      increment = BigInt(saved.increment);
    } catch (cause) {
      throw new InvalidArgumentError(`Expected a Pcg32State for \`state\` but received ${JSON.stringify(saved)}`, { cause });
    }
    if (state < 0n || state > MASK64 || increment < 0n || increment > MASK64 || (increment & 1n) === 0n) {
      throw new InvalidArgumentError(`Expected a Pcg32State for \`state\` but received ${JSON.stringify(saved)}`);
    }
    this.#state = state;
    this.#increment = increment;
  }

  /** A generator continuing from a saved state. */
  static fromState(saved: Pcg32State): Pcg32 {
    const rng = new Pcg32();
    rng.setState(saved);
    return rng;
  }
}
