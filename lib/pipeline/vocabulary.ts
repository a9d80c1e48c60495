/**
 * Prompts outside a closed vocabulary. A model trained on a closed world (the embedded default model: captions of
 * a synthetic world of coloured shapes, 27 words) lists the words its text encoder saw in its manifest
 * (`prompt_words`). Its byte-level tokenizer turns any other word into tokens too, so "a cat playing the piano"
 * generates without complaint, but "cat" and "piano" have no learnt meaning: the video is whatever the model makes
 * of the words it knows. The pipeline says so once per run, before any network call, as a
 * {@link StreamingT2VWarning} (`onWarning`; without one, `process.emitWarning`). Models with an open vocabulary
 * (the official weights) have no list and never warn.
 *
 * @example
 * ```ts
 * unknownWords('a red cat moving up', new Set(['a', 'red', 'moving', 'up'])); // ['cat']
 * ```
 * @module
 */
import type { StreamingT2VWarning } from './types.js';

/** Lowercase words of letters in `text`, unique, in order of first appearance ("A red-circle, 2x!" → a, red, circle, x). */
export function promptWords(text: string): string[] {
  const words = text.normalize('NFC').toLowerCase().split(/[^\p{L}]+/u).filter((w) => w.length > 0);
  return [...new Set(words)];
}

/** The words of `texts` that are not in `vocabulary`, unique, in order. */
export function unknownWords(texts: string | readonly string[], vocabulary: ReadonlySet<string>): string[] {
  const all = (typeof texts === 'string' ? [texts] : texts).flatMap(promptWords);
  return [...new Set(all)].filter((w) => !vocabulary.has(w));
}

/**
 * The `PROMPT_OUTSIDE_VOCABULARY` warning for a run whose prompt or negative prompt has words outside the model's
 * `prompt_words`; undefined when every word is known or the model has no list.
 */
export function vocabularyWarning(
  prompt: string,
  negativePrompt: string,
  vocabulary: readonly string[] | undefined,
  modelName: string,
): StreamingT2VWarning | undefined {
  if (vocabulary === undefined) return undefined;
  const words = unknownWords([prompt, negativePrompt], new Set(vocabulary));
  if (words.length === 0) return undefined;
  const quoted = words.map((w) => `"${w}"`).join(', ');
  return {
    code: 'PROMPT_OUTSIDE_VOCABULARY',
    words,
    message:
      `The model "${modelName}" was trained on a closed vocabulary and never saw ${words.length === 1 ? 'the word' : 'the words'} ${quoted}: ` +
      `it still generates, but ${words.length === 1 ? 'that word has' : 'those words have'} no learnt meaning. ` +
      `Its words (manifest prompt_words): ${vocabulary.join(', ')}.`,
  };
}

/** Messages already emitted as process warnings (each once per process, as Node does for deprecations). */
const emitted = new Set<string>();

/**
 * Delivers a warning to `onWarning`, or, without one, as a Node process warning (type `StreamingT2VWarning`, code
 * `ST2V_<code>`), each distinct message once per process, so a server that runs one prompt many times is told once.
 * An exception thrown by `onWarning` is logged and ignored, as for `onProgress`.
 */
export function deliverWarning(warning: StreamingT2VWarning, onWarning: ((w: StreamingT2VWarning) => void) | undefined): void {
  if (onWarning === undefined) {
    if (emitted.has(warning.message)) return;
    emitted.add(warning.message);
    process.emitWarning(warning.message, { type: 'StreamingT2VWarning', code: `ST2V_${warning.code}` });
    return;
  }
  try {
    onWarning(warning);
  } catch (error) {
    console.error('streamingt2v: onWarning threw (ignored):', error);
  }
}
