"""CLIP byte-level BPE: tokenizer files for the TypeScript side and a pure-Python reference encoder.

Both text encoders take CLIP BPE ids (spec §1.6, §1.8): 77 ids = BOS, at most 75 content tokens, EOS,
then padding. BOS ``<|startoftext|>`` = 49406 and EOS ``<|endoftext|>`` = 49407 for the real vocabulary.
Truncation keeps EOS as the last id (HF ``CLIPTokenizer(truncation=True, max_length=77)`` and
``open_clip.tokenize`` agree on this). Padding differs by convention:

* ``open_clip.tokenize`` (enhancer, stage 3) pads with id 0.
* The ModelScope ``CLIPTokenizer`` (stages 1-2, ``padding="max_length"``) pads with the ``pad_token``
  of its ``tokenizer/special_tokens_map.json``. ``from_hf_dir`` reads it from that file; when the file
  or the key is missing, ``"!"`` (id 0, the SD 2.x / OpenCLIP convention) is assumed.

Text normalisation of the reference and of the written tokenizer.json: Unicode NFC, whitespace runs ->
one space, strip, lowercase. The official tokenizers additionally run ``ftfy.fix_text`` (and open_clip
``html.unescape``), which only matters for mojibake or HTML entities. Pre-tokenisation is the CLIP
pattern ``<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+``
(written here as a scanner over Unicode categories, because Debian's python3 has no ``regex`` module).

Files written by ``write_tokenizer_files`` (read by ``@huggingface/tokenizers`` on the TS side):
``tokenizer.json`` (HF tokenizers format; its ``truncation``/``padding`` sections are honoured by the
Rust/Python library but ignored by the JS library, see ``models/tests/tokenizer_check.mjs`` for what the
TS code must do) and ``tokenizer_config.json`` (``model_max_length``, ``bos/eos/pad/unk`` tokens and ids).

CLI: ``python3 -m models.tokenizer --hf-dir <ModelScope repo>/tokenizer --out DIR`` or
``python3 -m models.tokenizer --tiny [--words FILE] --out DIR``.
"""

import argparse
import json
import os
import unicodedata
from functools import lru_cache
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .configs_aux import TEXT_MAX_LENGTH, TINY_VOCAB_SIZE

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
DEFAULT_PAD_TOKEN = "!"
END_OF_WORD = "</w>"
SPLIT_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
#: HF CLIPTokenizer reads at most this many merges from merges.txt (49152 - 256 - 2).
MAX_CLIP_MERGES = 48894

#: Words of the tiny caption grammar (colours, shapes, motions, backgrounds and glue words).
DEFAULT_TINY_WORDS = (
    "a an the and with on in of to at is are moving slowly quickly turning spinning bouncing "
    "sliding growing shrinking left right up down around across red green blue yellow orange purple "
    "white black gray pink cyan circle square triangle star ball box ring dot line stripe background "
    "sky grass sea sand night day dark bright plain checkered gradient shapes two three small big "
    "over under from into , ."
).split()


@lru_cache()
def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2/CLIP reversible byte -> printable character table (256 entries, CLIP's order)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table  # insertion order = CLIP order: printable bytes, then the rest


def normalize(text: str) -> str:
    """NFC, whitespace runs -> single space, strip, lowercase."""
    return " ".join(unicodedata.normalize("NFC", text).split()).lower()


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L")


def _is_number(ch: str) -> bool:
    return unicodedata.category(ch).startswith("N")


def pre_tokenize(text: str) -> List[str]:
    """Split normalised text like the CLIP regex (alternatives tried in order at each position)."""
    pieces: List[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        special = next((s for s in (BOS_TOKEN, EOS_TOKEN) if text.startswith(s, i)), None)
        contraction = next((c for c in CONTRACTIONS if text.startswith(c, i)), None)
        if special or contraction:
            piece = special or contraction
        elif _is_letter(ch):
            j = i + 1
            while j < n and _is_letter(text[j]):
                j += 1
            piece = text[i:j]
        elif _is_number(ch):
            piece = ch
        elif ch.isspace():
            i += 1
            continue
        else:
            j = i + 1
            while j < n and not (text[j].isspace() or _is_letter(text[j]) or _is_number(text[j])):
                j += 1
            piece = text[i:j]
        pieces.append(piece)
        i += len(piece)
    return pieces


class ClipBPE:
    """Pure-Python CLIP BPE over a vocabulary and ranked merges; ``encode`` is the reference for all tests."""

    def __init__(self, vocab: Dict[str, int], merges: Sequence[Tuple[str, str]], pad_token: str = DEFAULT_PAD_TOKEN,
                 max_length: int = TEXT_MAX_LENGTH):
        self.vocab = dict(vocab)
        self.merges = [tuple(m) for m in merges]
        self.ranks = {m: r for r, m in enumerate(self.merges)}
        for token in (BOS_TOKEN, EOS_TOKEN, pad_token):
            if token not in self.vocab:
                raise ValueError(f"token {token!r} is not in the vocabulary")
        self.pad_token = pad_token
        self.bos_id = self.vocab[BOS_TOKEN]
        self.eos_id = self.vocab[EOS_TOKEN]
        self.pad_id = self.vocab[pad_token]
        self.max_length = max_length
        self._byte_encoder = bytes_to_unicode()
        self._cache: Dict[str, List[str]] = {}

    def bpe(self, piece: str) -> List[str]:
        """Byte-level encode one pre-token and merge lowest-rank pairs first; last symbol carries ``</w>``."""
        if piece in self._cache:
            return self._cache[piece]
        chars = [self._byte_encoder[b] for b in piece.encode("utf-8")]
        word = chars[:-1] + [chars[-1] + END_OF_WORD]
        while len(word) > 1:
            pairs = [(self.ranks.get((a, b), None), i) for i, (a, b) in enumerate(zip(word[:-1], word[1:]))]
            ranked = [(r, i) for r, i in pairs if r is not None]
            if not ranked:
                break
            best = min(ranked)[0]
            a, b = self.merges[best]
            merged: List[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == a and word[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[piece] = word
        return word

    def content_ids(self, text: str) -> List[int]:
        """Ids of the text without BOS/EOS/padding."""
        ids: List[int] = []
        for piece in pre_tokenize(normalize(text)):
            if piece in (BOS_TOKEN, EOS_TOKEN):
                ids.append(self.vocab[piece])
            else:
                ids.extend(self.vocab[symbol] for symbol in self.bpe(piece))
        return ids

    def encode(self, text: str) -> List[int]:
        """77 ids: BOS, up to 75 content ids, EOS, then ``pad_id`` up to ``max_length``."""
        ids = [self.bos_id] + self.content_ids(text)[: self.max_length - 2] + [self.eos_id]
        return ids + [self.pad_id] * (self.max_length - len(ids))


def load_vocab_merges(vocab_path: str, merges_path: str) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """Read HF ``vocab.json`` and ``merges.txt`` (first line is a ``#version`` header)."""
    with open(vocab_path, encoding="utf-8") as f:
        vocab = json.load(f)
    with open(merges_path, encoding="utf-8") as f:
        lines = f.read().strip().split("\n")
    body = [line for line in lines[1:] if line.strip()] if lines and lines[0].startswith("#") else lines
    merges = [tuple(line.split()) for line in body[:MAX_CLIP_MERGES]]
    return vocab, merges  # type: ignore[return-value]


def read_pad_token(tokenizer_dir: str) -> str:
    """``pad_token`` from special_tokens_map.json (string or {"content": ...}); ``"!"`` if absent."""
    path = os.path.join(tokenizer_dir, "special_tokens_map.json")
    if not os.path.exists(path):
        return DEFAULT_PAD_TOKEN
    with open(path, encoding="utf-8") as f:
        pad = json.load(f).get("pad_token", DEFAULT_PAD_TOKEN)
    return pad["content"] if isinstance(pad, dict) else pad


def from_hf_dir(tokenizer_dir: str, pad_token: Optional[str] = None) -> ClipBPE:
    """Real tokenizer from the ModelScope repo's ``tokenizer/`` folder (vocab.json, merges.txt, special_tokens_map.json)."""
    vocab, merges = load_vocab_merges(os.path.join(tokenizer_dir, "vocab.json"),
                                      os.path.join(tokenizer_dir, "merges.txt"))
    return ClipBPE(vocab, merges, pad_token or read_pad_token(tokenizer_dir))


def learn_tiny_bpe(words: Iterable[str], max_vocab: int = TINY_VOCAB_SIZE) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """Small vocabulary in CLIP's layout: 256 byte symbols, the same with ``</w>``, learned merges, BOS, EOS.

    Merges are learned greedily (most frequent adjacent pair over the distinct pre-tokens, ties to the
    smallest pair) until every word is one symbol or the vocabulary would exceed ``max_vocab``.
    """
    byte_encoder = bytes_to_unicode()
    base = list(byte_encoder.values())
    vocab_list = base + [c + END_OF_WORD for c in base]
    known = set(vocab_list)
    words_as_symbols = []
    for piece in sorted({p for w in words for p in pre_tokenize(normalize(w))}):
        chars = [byte_encoder[b] for b in piece.encode("utf-8")]
        words_as_symbols.append(chars[:-1] + [chars[-1] + END_OF_WORD])
    merges: List[Tuple[str, str]] = []
    while len(vocab_list) + 2 < max_vocab:
        counts: Dict[Tuple[str, str], int] = {}
        for symbols in words_as_symbols:
            for pair in zip(symbols[:-1], symbols[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        if best[0] + best[1] not in known:
            known.add(best[0] + best[1])
            vocab_list.append(best[0] + best[1])
        for k, symbols in enumerate(words_as_symbols):
            out, i = [], 0
            while i < len(symbols):
                if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            words_as_symbols[k] = out
    vocab_list += [BOS_TOKEN, EOS_TOKEN]
    return {token: i for i, token in enumerate(vocab_list)}, merges


def tiny_tokenizer(words: Iterable[str] = DEFAULT_TINY_WORDS) -> ClipBPE:
    """Tiny tokenizer of the same kind; all ids (BOS/EOS included) are below TINY_VOCAB_SIZE; pads with 0."""
    vocab, merges = learn_tiny_bpe(words)
    return ClipBPE(vocab, merges, DEFAULT_PAD_TOKEN)


def tokenizer_json(tok: ClipBPE) -> dict:
    """HF tokenizers ``tokenizer.json`` equivalent to ``tok`` (CLIPTokenizerFast structure)."""
    special = [{"id": tok.vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": True, "special": True} for t in (BOS_TOKEN, EOS_TOKEN)]
    return {
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": tok.max_length, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": tok.max_length}, "direction": "Right", "pad_to_multiple_of": None,
                    "pad_id": tok.pad_id, "pad_type_id": 0, "pad_token": tok.pad_token},
        "added_tokens": special,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
            {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_PATTERN}, "behavior": "Removed", "invert": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "RobertaProcessing", "sep": [EOS_TOKEN, tok.eos_id], "cls": [BOS_TOKEN, tok.bos_id],
                           "trim_offsets": False, "add_prefix_space": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": EOS_TOKEN, "continuing_subword_prefix": "",
                  "end_of_word_suffix": END_OF_WORD, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": tok.vocab, "merges": [list(m) for m in tok.merges]},
    }


def tokenizer_config_json(tok: ClipBPE) -> dict:
    """``tokenizer_config.json`` with the token strings and, for the TS side, their ids."""
    return {"tokenizer_class": "CLIPTokenizer", "model_max_length": tok.max_length, "do_lower_case": True,
            "bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": EOS_TOKEN, "pad_token": tok.pad_token,
            "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id,
            "padding_side": "right", "truncation_side": "right"}


def write_tokenizer_files(tok: ClipBPE, out_dir: str) -> List[str]:
    """Write tokenizer.json and tokenizer_config.json into ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, payload in (("tokenizer.json", tokenizer_json(tok)), ("tokenizer_config.json", tokenizer_config_json(tok))):
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(payload, f, ensure_ascii=False, separators=(",", ":") if name == "tokenizer.json" else (", ", ": "))
        paths.append(path)
    return paths


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hf-dir", help="folder with vocab.json, merges.txt, special_tokens_map.json")
    source.add_argument("--tiny", action="store_true", help="learn a tiny vocabulary from a word list")
    parser.add_argument("--words", help="file of words (whitespace separated) for --tiny")
    parser.add_argument("--pad-token", help="override the pad token")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    if args.tiny:
        words = DEFAULT_TINY_WORDS
        if args.words:
            with open(args.words, encoding="utf-8") as f:
                words = tuple(f.read().split())
        tok = tiny_tokenizer(words)
        if args.pad_token:
            tok = ClipBPE(tok.vocab, tok.merges, args.pad_token)
    else:
        tok = from_hf_dir(args.hf_dir, args.pad_token)
    for path in write_tokenizer_files(tok, args.out):
        print(path)


if __name__ == "__main__":
    main()
