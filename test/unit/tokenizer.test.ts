// ClipTokenizer (lib/models/tokenizer.ts) on models/tiny's tokenizer against the Python reference encoder
// (models/tokenizer.py ClipBPE), whose ids are committed in test/fixtures/tokenizer/reference.json
// (regenerate: /usr/bin/python3 test/fixtures/tokenizer/make_reference.py).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { ManifestError } from '../../lib/models/manifest-error.js';
import { readManifest, sha256File, type TokenizerEntry } from '../../lib/models/manifest.js';
import { ClipTokenizer } from '../../lib/models/tokenizer.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const tinyDir = join(root, 'models', 'tiny');
const reference = JSON.parse(readFileSync(join(root, 'test', 'fixtures', 'tokenizer', 'reference.json'), 'utf8')) as {
  tokenizer_sha256: string;
  texts: string[];
  ids: Record<'text_encoder' | 'enhancer_text_encoder', number[][]>;
};

describe('ClipTokenizer', () => {
  it('fixture was made from the committed tokenizer', async () => {
    expect(await sha256File(join(tinyDir, 'tokenizer.json'))).toBe(reference.tokenizer_sha256);
  });

  for (const role of ['text_encoder', 'enhancer_text_encoder'] as const) {
    it(`${role}: ids equal the Python reference encoder for every text`, async () => {
      const manifest = await readManifest(tinyDir, { verifyHashes: false });
      const tok = await ClipTokenizer.fromManifest(manifest, role);
      const want = reference.ids[role];
      reference.texts.forEach((text, i) => expect(tok.encode(text), JSON.stringify(text)).toEqual(want[i]));
      const batch = tok.encodeBatch(reference.texts);
      expect(Array.from(batch, Number)).toEqual(want.flat());
    });
  }

  it('BOS/EOS, padding and truncation keep the official layout', async () => {
    const manifest = await readManifest(tinyDir, { verifyHashes: false });
    const tok = await ClipTokenizer.fromManifest(manifest);
    const entry = manifest.tokenizers.text_encoder;
    expect([tok.maxLength, tok.bosId, tok.eosId, tok.padId]).toEqual([77, entry.bosId, entry.eosId, 0]);
    const empty = tok.encode('');
    expect(empty.slice(0, 2)).toEqual([tok.bosId, tok.eosId]);
    expect(empty.slice(2)).toEqual(Array(75).fill(0));
    const words = tok.encode('red ball');
    expect(words.slice(0, 4)).toEqual([tok.bosId, ...tok.contentIds('red ball'), tok.eosId]);
    expect(tok.contentIds('red ball')).toHaveLength(2); // each grammar word is one token
    expect(tok.encode('  RED\tBall ')).toEqual(words); // normaliser: whitespace and case
    const long = tok.encode(Array(100).fill('red').join(' '));
    expect(long).toHaveLength(77);
    expect(long[0]).toBe(tok.bosId);
    expect(long[76]).toBe(tok.eosId);
    expect(long.slice(1, 76)).toEqual(Array(75).fill(tok.contentIds('red')[0]));
  });

  it('rejects a tokenizer file that disagrees with the manifest, and missing files', async () => {
    const manifest = await readManifest(tinyDir, { verifyHashes: false });
    const entry: TokenizerEntry = { ...manifest.tokenizers.text_encoder, bosId: 1 };
    await expect(ClipTokenizer.load(entry)).rejects.toBeInstanceOf(ManifestError);
    await expect(ClipTokenizer.load({ ...entry, path: join(tinyDir, 'nope.json') })).rejects.toMatchObject({ code: 'ERR_MODEL_LOAD', path: join(tinyDir, 'nope.json') });
    await expect(ClipTokenizer.load({ ...manifest.tokenizers.text_encoder, maxLength: 1 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
  });
});
