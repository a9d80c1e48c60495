/**
 * CLIP BPE tokenizer for the text encoders: 77 int64 ids = BOS, at most 75 content ids, EOS, then padding —
 * as the ModelScope `CLIPTokenizer(padding="max_length", truncation=True)` (stages 1–2) and `open_clip.tokenize`
 * (stage 3) produce them. Byte-level BPE runs in `@huggingface/tokenizers` on the manifest's `tokenizer.json`
 * (normaliser: NFC, whitespace runs → one space, lowercase; CLIP split pattern); BOS/EOS, truncation (EOS kept
 * last) and padding (`pad_id` of the manifest entry; 0 for both official encoders) are applied here, because
 * the JS library ignores the file's `truncation`/`padding` sections.
 *
 * @example
 * ```ts
 * const manifest = await readManifest('models/tiny');
 * const tok = await ClipTokenizer.fromManifest(manifest, 'text_encoder');
 * using ids = await tok.toTensor(['', 'a red ball']); // int64 [2, 77], unconditional first
 * ```
 *
 * @module
 */
import { readFile } from 'node:fs/promises';

import { Tokenizer } from '@huggingface/tokenizers';

import { InvalidArgumentError, ModelLoadError } from '../errors.js';
import { Tensor, type TensorOptions } from '../tensor.js';
import { ManifestError } from './manifest-error.js';
import type { ModelManifest, TextEncoderRole, TokenizerEntry } from './manifest.js';

async function readJson(path: string, what: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ModelLoadError(path, `${what} ${path} is missing. Re-export the model directory with python3 -m models.export.`, { cause: error });
  }
  try {
    const json: unknown = JSON.parse(text);
    if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error('not a JSON object');
    return json as Record<string, unknown>;
  } catch (error) {
    throw new ModelLoadError(path, `${what} ${path} is not valid JSON (${(error as Error).message}). Re-export the model directory.`, { cause: error });
  }
}

/** CLIP BPE → fixed-length ids for one text encoder of a model directory. */
export class ClipTokenizer {
  /** Sequence length (77). */
  readonly maxLength: number;
  /** `<|startoftext|>` id. */
  readonly bosId: number;
  /** `<|endoftext|>` id. */
  readonly eosId: number;
  /** Padding id. */
  readonly padId: number;
  readonly #tokenizer: Tokenizer;

  private constructor(tokenizer: Tokenizer, entry: Pick<TokenizerEntry, 'maxLength' | 'bosId' | 'eosId' | 'padId'>) {
    this.#tokenizer = tokenizer;
    this.maxLength = entry.maxLength;
    this.bosId = entry.bosId;
    this.eosId = entry.eosId;
    this.padId = entry.padId;
  }

  /**
   * Loads the tokenizer files of a manifest entry. Throws {@link ModelLoadError} when a file is missing or
   * unreadable and {@link ManifestError} when the file's BOS/EOS ids disagree with the entry.
   */
  static async load(entry: TokenizerEntry): Promise<ClipTokenizer> {
    if (!Number.isInteger(entry.maxLength) || entry.maxLength < 2) {
      throw new InvalidArgumentError(`Expected \`maxLength\` ≥ 2 but received ${entry.maxLength}`);
    }
    const json = await readJson(entry.path, 'Tokenizer file');
    const config = await readJson(entry.configPath, 'Tokenizer config');
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(json, config);
    } catch (error) {
      throw new ModelLoadError(entry.path, `Cannot build a tokenizer from ${entry.path}: ${(error as Error).message}. Re-export the model directory.`, { cause: error });
    }
    const tok = new ClipTokenizer(tokenizer, entry);
    const special = tokenizer.encode('<|startoftext|><|endoftext|>', { add_special_tokens: false }).ids;
    if (special.length !== 2 || special[0] !== entry.bosId || special[1] !== entry.eosId) {
      throw new ManifestError(entry.path, `${entry.path} encodes BOS/EOS as ${JSON.stringify(special)}, but the manifest says [${entry.bosId}, ${entry.eosId}]. The tokenizer and the manifest come from different exports; re-export the directory.`);
    }
    return tok;
  }

  /** The tokenizer of `role` (`text_encoder` for stages 1–2, `enhancer_text_encoder` for stage 3). */
  static fromManifest(manifest: ModelManifest, role: TextEncoderRole = 'text_encoder'): Promise<ClipTokenizer> {
    const entry = manifest.tokenizers[role];
    if (entry === undefined) throw new InvalidArgumentError(`${manifest.path} has no tokenizer for \`${String(role)}\``);
    return ClipTokenizer.load(entry);
  }

  /** Content ids of `text` (no BOS/EOS, no truncation). */
  contentIds(text: string): number[] {
    if (typeof text !== 'string') throw new InvalidArgumentError(`Expected a string prompt but received ${typeof text}`);
    return this.#tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  /** `maxLength` ids: BOS, the first `maxLength − 2` content ids, EOS, then `padId`. */
  encode(text: string): number[] {
    const ids = [this.bosId, ...this.contentIds(text).slice(0, this.maxLength - 2), this.eosId];
    while (ids.length < this.maxLength) ids.push(this.padId);
    return ids;
  }

  /** Ids of several texts, row-major `[texts.length, maxLength]`. */
  encodeBatch(texts: readonly string[]): BigInt64Array {
    const out = new BigInt64Array(texts.length * this.maxLength);
    texts.forEach((text, row) => {
      this.encode(text).forEach((id, i) => {
        out[row * this.maxLength + i] = BigInt(id);
      });
    });
    return out;
  }

  /** An int64 tensor `[texts.length, maxLength]` of ids (the text encoders' `input_ids`). */
  toTensor(texts: readonly string[], opts?: Pick<TensorOptions, 'device'>): Promise<Tensor> {
    if (!Array.isArray(texts) || texts.length === 0) throw new InvalidArgumentError('Expected a non-empty array of texts');
    return Tensor.fromArray(this.encodeBatch(texts), [texts.length, this.maxLength], opts?.device === undefined ? undefined : { device: opts.device });
  }
}
