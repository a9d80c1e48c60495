// lib/pipeline/vocabulary.ts: which prompt words a closed-vocabulary model (manifest prompt_words) never saw, and
// how the warning is delivered (onWarning, else a Node process warning).
import { afterEach, describe, expect, it, vi } from 'vitest';

import { deliverWarning, promptWords, unknownWords, vocabularyWarning } from '../../lib/pipeline/vocabulary.js';
import type { StreamingT2VWarning } from '../../lib/pipeline/types.js';

const WORLD = ['a', 'background', 'blue', 'circle', 'left', 'moving', 'on', 'plain', 'red', 'the', 'to'];

describe('promptWords / unknownWords', () => {
  it('splits on everything but letters, lowercases, keeps the first of repeated words', () => {
    expect(promptWords('A red-circle, moving  LEFT (2x)!\nred')).toEqual(['a', 'red', 'circle', 'moving', 'left', 'x']);
    expect(promptWords('  ,,, 42 ')).toEqual([]);
    expect(promptWords('Été à Paris')).toEqual(['été', 'à', 'paris']);
    expect(promptWords('e\u0301te\u0301')).toEqual(['été']); // NFC: the decomposed accents become one letter
  });

  it('returns the words outside the vocabulary, over several texts, once each, in order', () => {
    const vocab = new Set(WORLD);
    expect(unknownWords('a red circle moving to the left on a plain blue background', vocab)).toEqual([]);
    expect(unknownWords('a red cat moving left on the moon', vocab)).toEqual(['cat', 'moon']);
    expect(unknownWords(['a cat', 'blurry cat, dark'], vocab)).toEqual(['cat', 'blurry', 'dark']);
  });
});

describe('vocabularyWarning', () => {
  it('is undefined for an open vocabulary (no prompt_words) and for a prompt of known words', () => {
    expect(vocabularyWarning('a cat playing the piano', '', undefined, 'full')).toBeUndefined();
    expect(vocabularyWarning('A red circle moving LEFT.', '', WORLD, 'default')).toBeUndefined();
  });

  it('names the model and every unknown word of the prompt and the negative prompt, and lists the known words', () => {
    const w = vocabularyWarning('a cat playing', 'blurry', WORLD, 'default');
    expect(w).toEqual({
      code: 'PROMPT_OUTSIDE_VOCABULARY',
      words: ['cat', 'playing', 'blurry'],
      message:
        'The model "default" was trained on a closed vocabulary and never saw the words "cat", "playing", "blurry": ' +
        'it still generates, but those words have no learnt meaning. ' +
        'Its words (manifest prompt_words): a, background, blue, circle, left, moving, on, plain, red, the, to.',
    });
    expect(vocabularyWarning('a red dog', '', WORLD, 'm')?.message).toMatch(/^The model "m" .* never saw the word "dog": it still generates, but that word has no/);
  });
});

describe('deliverWarning', () => {
  const warning: StreamingT2VWarning = { code: 'PROMPT_OUTSIDE_VOCABULARY', message: 'never saw "dog"', words: ['dog'] };
  afterEach(() => vi.restoreAllMocks());

  it('calls onWarning with the warning and emits no process warning', async () => {
    const seen: StreamingT2VWarning[] = [];
    const processWarnings: Error[] = [];
    const listener = (w: Error) => processWarnings.push(w);
    process.on('warning', listener);
    try {
      deliverWarning(warning, (w) => seen.push(w));
      await new Promise((r) => setImmediate(r)); // process warnings are emitted on the next tick
    } finally {
      process.off('warning', listener);
    }
    expect(seen).toEqual([warning]);
    expect(processWarnings).toEqual([]);
  });

  it('without onWarning: a Node process warning of type StreamingT2VWarning, code ST2V_<code>, each message once per process', async () => {
    const seen: (Error & { code?: string })[] = [];
    const listener = (w: Error) => seen.push(w);
    process.on('warning', listener);
    try {
      deliverWarning(warning, undefined);
      deliverWarning(warning, undefined); // the same message again: not repeated
      deliverWarning({ ...warning, message: 'never saw "cat"', words: ['cat'] }, undefined);
      await new Promise((r) => setImmediate(r)); // process warnings are emitted on the next tick
    } finally {
      process.off('warning', listener);
    }
    expect(seen.map((w) => [w.name, w.code, w.message])).toEqual([
      ['StreamingT2VWarning', 'ST2V_PROMPT_OUTSIDE_VOCABULARY', 'never saw "dog"'],
      ['StreamingT2VWarning', 'ST2V_PROMPT_OUTSIDE_VOCABULARY', 'never saw "cat"'],
    ]);
  });

  it('an onWarning that throws is logged and ignored', () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    expect(() =>
      deliverWarning(warning, () => {
        throw new Error('consumer bug');
      }),
    ).not.toThrow();
    expect(logged).toHaveBeenCalledWith('streamingt2v: onWarning threw (ignored):', expect.objectContaining({ message: 'consumer bug' }));
  });
});
