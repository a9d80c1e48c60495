/**
 * readAhead(): a bounded FIFO between an async source (the pipeline's frames) and a slow consumer
 * (MP4 pipes, PNG encoding, the network), so that the two overlap instead of taking turns. A
 * producer loop keeps pulling from the source while the consumer is busy, until `capacity` items
 * wait in the queue; the consumer takes them in order.
 *
 * Guarantees:
 * - Every item is delivered once, in source order; none is dropped while the consumer keeps reading.
 * - At most `capacity` items have been pulled from the source and not yet handed to the consumer
 *   (the item the consumer is working on is not counted), so memory is bounded by `capacity`.
 * - An error thrown by the source reaches the consumer after the items produced before it.
 * - When the consumer stops early (`break`, a throw in its loop body, `return()`), the producer
 *   stops pulling: `onEarlyStop` is called if a pull is in flight (to abort the source's current
 *   work), the in-flight pull is awaited, and the source is closed with `return()` (its `finally`
 *   blocks run) before the consumer's `return()` settles. Items still queued are dropped.
 * - `capacity: 0` delegates to the source directly (`yield*`): no queue, no extra pull, the source
 *   is paused while the consumer works, exactly as a plain `for await` over the source.
 *
 * The source is iterated only once the consumer asks for the first item.
 *
 * @example
 * ```ts
 * const stop = new AbortController();
 * const frames = pipe.generate({ prompt, numFrames: 240, signal: stop.signal });
 * for await (const frame of readAhead(frames, { capacity: 8, onEarlyStop: () => stop.abort() })) {
 *   await sink.write(frame); // the next frames are being generated meanwhile
 * }
 * ```
 * @module
 */
import { intOption, invalid } from './options.js';

/** Options of {@link readAhead}. */
export interface ReadAheadOptions {
  /**
   * Items the producer may pull ahead of the consumer (an integer ≥ 0). 0 turns the queue off.
   * Example: 8 (one stage-2 window of new frames).
   */
  capacity: number;
  /**
   * Called once when the consumer stops early while a pull from the source is in flight, before
   * that pull is awaited and the source closed. Abort the source's current work here (e.g. the
   * run's `AbortController`) so that stopping does not wait for work whose result is dropped.
   * Default: none (the in-flight pull runs to its end).
   */
  onEarlyStop?: (() => void) | undefined;
}

/** The largest accepted capacity. */
export const MAX_CAPACITY = 1_000_000;

/**
 * Yields the items of `source` in order, pulling up to `options.capacity` of them ahead of the
 * consumer. The options are checked at once (InvalidArgumentError), the source only when iterated.
 */
export function readAhead<T>(source: AsyncIterable<T>, options: ReadAheadOptions): AsyncGenerator<T, void, undefined> {
  if (options === null || typeof options !== 'object') invalid('an options object', 'options', options);
  if (source === null || typeof (source as Partial<AsyncIterable<T>>)[Symbol.asyncIterator] !== 'function') invalid('an async iterable', 'source', source);
  if (options.capacity === undefined) invalid('an integer ≥ 0', 'capacity', options.capacity);
  const capacity = intOption(options.capacity, 'capacity', 0, 0, MAX_CAPACITY);
  if (options.onEarlyStop !== undefined && typeof options.onEarlyStop !== 'function') invalid('a function', 'onEarlyStop', options.onEarlyStop);
  return capacity === 0 ? passThrough(source) : buffered(source, capacity, options.onEarlyStop);
}

async function* passThrough<T>(source: AsyncIterable<T>): AsyncGenerator<T, void, undefined> {
  yield* source;
}

async function* buffered<T>(source: AsyncIterable<T>, capacity: number, onEarlyStop: (() => void) | undefined): AsyncGenerator<T, void, undefined> {
  const iterator = source[Symbol.asyncIterator]();
  const queue: T[] = [];
  let finished = false; // the source returned done or threw: it must not be closed
  let failure: { error: unknown } | undefined;
  let producing = true; // the producer loop runs
  let stopped = false; // the consumer left early
  let pulling = false;
  let wakeConsumer: (() => void) | undefined;
  let wakeProducer: (() => void) | undefined;

  // Never rejects: every outcome is recorded for the consumer.
  const produce = async (): Promise<void> => {
    try {
      while (!stopped) {
        if (queue.length >= capacity) {
          await new Promise<void>((resolve) => (wakeProducer = resolve));
          continue;
        }
        pulling = true;
        let result: IteratorResult<T>;
        try {
          result = await iterator.next();
        } finally {
          pulling = false;
        }
        if (result.done === true) {
          finished = true;
          return;
        }
        queue.push(result.value);
        wakeConsumer?.();
      }
    } catch (error) {
      finished = true;
      failure = { error };
    } finally {
      producing = false;
      wakeConsumer?.();
    }
  };

  const producer = produce();
  try {
    for (;;) {
      if (queue.length > 0) {
        const item = queue.shift() as T;
        wakeProducer?.();
        yield item;
        continue;
      }
      if (failure !== undefined) throw failure.error;
      if (!producing) return;
      await new Promise<void>((resolve) => (wakeConsumer = resolve));
    }
  } finally {
    if (producing) {
      stopped = true;
      if (pulling) {
        try {
          onEarlyStop?.();
        } catch (error) {
          console.error('streamingt2v: readAhead onEarlyStop threw', error);
        }
      }
      wakeProducer?.();
    }
    await producer;
    queue.length = 0;
    // An error of the source after the consumer left is dropped with the items: nobody reads it.
    if (!finished) await iterator.return?.();
  }
}
