// readAhead() over plain async generators (no addon): order, the capacity bound, overlap,
// early stop (the source is closed and stops being pulled), and error delivery after the
// items produced before the error.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { InvalidArgumentError } from '../../lib/errors.js';
import { readAhead } from '../../lib/pipeline/read-ahead.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Yields to the microtask queue `n` times (deterministic interleavings without timers). */
async function ticks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

/** A counted source: `started` counts pulls that began, `closed` is set by its finally block. */
function countedSource(count: number, options: { delay?: (i: number) => Promise<void>; failAt?: number } = {}) {
  const state = { started: 0, produced: 0, closed: false };
  async function* gen(): AsyncGenerator<number, void, undefined> {
    try {
      for (let i = 0; i < count; i++) {
        state.started++;
        await options.delay?.(i);
        if (i === options.failAt) throw new Error(`source failed at ${i}`);
        state.produced++;
        yield i;
      }
    } finally {
      state.closed = true;
    }
  }
  return { state, source: gen() };
}

describe('readAhead: order and bound', () => {
  for (const capacity of [0, 1, 3, 8]) {
    it(`capacity ${capacity}: every item once, in order; never more than ${capacity} pulled ahead of the consumer`, async () => {
      const { state, source } = countedSource(40, { delay: (i) => sleep(i % 3) });
      const seen: number[] = [];
      let maxAhead = 0;
      for await (const x of readAhead(source, { capacity })) {
        seen.push(x);
        // the consumer is slower than the source: give the producer time to fill the queue
        await sleep(x % 4 === 0 ? 15 : 1);
        maxAhead = Math.max(maxAhead, state.started - seen.length);
      }
      expect(seen).toEqual([...Array(40).keys()]);
      expect(maxAhead).toBe(capacity); // reached (the consumer was slow) and never exceeded
      expect(state.closed).toBe(true);
    });
  }

  it('capacity 0 pauses the source while the consumer works; capacity > 0 keeps it producing', async () => {
    for (const capacity of [0, 2]) {
      const { state, source } = countedSource(10);
      const it = readAhead(source, { capacity });
      expect((await it.next()).value).toBe(0);
      await sleep(30); // the consumer is busy with item 0
      expect(state.produced).toBe(1 + capacity);
      await it.return(undefined);
    }
  });

  it('property: any capacity and interleaving delivers the source in order within the bound', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 0, max: 25 }),
        fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 30 }),
        fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 30 }),
        async (capacity, count, sourceDelays, consumerDelays) => {
          const { state, source } = countedSource(count, { delay: (i) => ticks(sourceDelays[i % sourceDelays.length]!) });
          const seen: number[] = [];
          for await (const x of readAhead(source, { capacity })) {
            seen.push(x);
            if (state.started - seen.length > capacity) return false;
            await ticks(consumerDelays[x % consumerDelays.length]!);
            if (state.started - seen.length > capacity) return false;
          }
          return seen.length === count && seen.every((x, i) => x === i) && state.closed;
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('readAhead: early stop', () => {
  for (const capacity of [0, 1, 8]) {
    it(`capacity ${capacity}: break closes the source (its finally runs) and nothing more is pulled`, async () => {
      const { state, source } = countedSource(1000, { delay: () => ticks(1) });
      const seen: number[] = [];
      for await (const x of readAhead(source, { capacity })) {
        seen.push(x);
        await sleep(5);
        if (x === 2) break;
      }
      expect(seen).toEqual([0, 1, 2]);
      expect(state.closed).toBe(true); // closed before the loop exit settled
      const pulled = state.started;
      expect(pulled).toBeLessThanOrEqual(3 + capacity);
      await sleep(30);
      expect(state.started).toBe(pulled);
    });
  }

  it('a throw in the consumer while a pull is in flight: onEarlyStop aborts it, the source closes, the consumer error wins', async () => {
    const stop = new AbortController();
    let finallyRan = false;
    let earlyStops = 0;
    async function* slow(): AsyncGenerator<number, void, undefined> {
      try {
        yield 0;
        // a long "network call" that only an abort cuts short
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, 10_000);
          stop.signal.addEventListener('abort', () => {
            clearTimeout(timer);
            reject(stop.signal.reason);
          });
        });
        yield 1;
      } finally {
        finallyRan = true;
      }
    }
    const started = performance.now();
    const consumerError = new Error('sink failed');
    const err = await (async () => {
      for await (const x of readAhead(slow(), { capacity: 4, onEarlyStop: () => (earlyStops++, stop.abort(new Error('stopped'))) })) {
        await sleep(10); // item 1 is being produced meanwhile
        if (x === 0) throw consumerError;
      }
    })().catch((e: unknown) => e);
    expect(err).toBe(consumerError);
    expect(earlyStops).toBe(1);
    expect(finallyRan).toBe(true);
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('without onEarlyStop the in-flight pull finishes, then the source is closed', async () => {
    const { state, source } = countedSource(100, { delay: (i) => (i === 1 ? sleep(50) : Promise.resolve()) });
    for await (const x of readAhead(source, { capacity: 2 })) {
      if (x === 0) {
        await sleep(5); // item 1 is in flight
        break;
      }
    }
    expect(state.produced).toBe(2);
    expect(state.closed).toBe(true);
  });

  it('return() before the first next() never iterates the source', async () => {
    const { state, source } = countedSource(5);
    const it = readAhead(source, { capacity: 3 });
    await it.return(undefined);
    await sleep(10);
    expect(state.started).toBe(0);
  });

  it('an error of source.return() reaches the consumer that breaks', async () => {
    const source: AsyncIterable<number> = {
      [Symbol.asyncIterator]: () => ({
        next: async () => ({ done: false, value: 1 }),
        return: async () => {
          throw new Error('close failed');
        },
      }),
    };
    const err = await (async () => {
      for await (const _ of readAhead(source, { capacity: 2 })) break;
    })().catch((e: unknown) => e);
    expect((err as Error).message).toBe('close failed');
  });
});

describe('readAhead: errors', () => {
  for (const capacity of [0, 1, 8]) {
    it(`capacity ${capacity}: a source error arrives after every item produced before it`, async () => {
      const { state, source } = countedSource(20, { failAt: 5 });
      const seen: number[] = [];
      const err = await (async () => {
        for await (const x of readAhead(source, { capacity })) {
          seen.push(x);
          await sleep(10); // slow consumer: with capacity > 0 the error is known long before it is delivered
        }
      })().catch((e: unknown) => e);
      expect(seen).toEqual([0, 1, 2, 3, 4]);
      expect((err as Error).message).toBe('source failed at 5');
      expect(state.closed).toBe(true);
    });
  }

  it('rejects invalid options with the uniform message', () => {
    const src = countedSource(1).source;
    for (const bad of [-1, 1.5, '8', NaN, undefined, null, 1e9]) {
      expect(() => readAhead(src, { capacity: bad as number })).toThrow(InvalidArgumentError);
    }
    expect(() => readAhead(src, { capacity: -1 })).toThrow('Expected an integer in [0, 1000000] for `capacity` but received -1 of type number');
    expect(() => readAhead(src, { capacity: 1, onEarlyStop: 5 as unknown as () => void })).toThrow('Expected a function for `onEarlyStop`');
    expect(() => readAhead([1, 2] as unknown as AsyncIterable<number>, { capacity: 1 })).toThrow('Expected an async iterable for `source`');
  });
});
