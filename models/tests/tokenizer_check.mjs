#!/usr/bin/env node
// Encode texts with @huggingface/tokenizers from the files models/tokenizer.py writes, and apply the
// steps the TypeScript pipeline must add itself, because the JS library ignores the `truncation` and
// `padding` sections of tokenizer.json:
//   1. ids = tokenizer.encode(text).ids            -> [BOS, ...content, EOS] (RobertaProcessing)
//   2. if ids.length > 77: ids = ids.slice(0, 76) + [EOS]   (keep EOS last, like CLIPTokenizer / open_clip)
//   3. pad on the right with pad_token_id up to 77 (tokenizer_config.json; 0 = "!" for the ModelScope
//      tokenizer and for open_clip.tokenize)
//
// usage: node models/tests/tokenizer_check.mjs <tokenizer dir> <texts.json>
//   texts.json: a JSON array of strings. Prints {"ids": [[77 ints], ...]} on stdout.
//   The library is resolved from this repository's node_modules, or from the node_modules folder
//   named by the environment variable TOKENIZERS_JS_NODE_MODULES.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

function loadTokenizersLibrary() {
  const base = process.env.TOKENIZERS_JS_NODE_MODULES
    ? join(process.env.TOKENIZERS_JS_NODE_MODULES, '_resolve_from_here.js')
    : import.meta.url;
  return createRequire(base)('@huggingface/tokenizers');
}

export function encodeFixedLength(tokenizer, config, text) {
  const maxLength = config.model_max_length;
  let ids = tokenizer.encode(text).ids;
  if (ids.length > maxLength) ids = [...ids.slice(0, maxLength - 1), config.eos_token_id];
  while (ids.length < maxLength) ids.push(config.pad_token_id);
  return ids;
}

const [dir, textsPath] = process.argv.slice(2);
if (!dir || !textsPath) {
  console.error('usage: node tokenizer_check.mjs <tokenizer dir> <texts.json>');
  process.exit(2);
}
const { Tokenizer } = loadTokenizersLibrary();
const tokenizerJson = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
const tokenizer = new Tokenizer(tokenizerJson, config);
const texts = JSON.parse(readFileSync(textsPath, 'utf8'));
process.stdout.write(JSON.stringify({ ids: texts.map((t) => encodeFixedLength(tokenizer, config, t)) }));
