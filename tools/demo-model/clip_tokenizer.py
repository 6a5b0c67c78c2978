"""A small OpenAI-format CLIP tokenizer (byte-level BPE) for the demo domain.

The runtime reads OpenAI's files: vocab.json (token → id) and merges.txt ("#version: 0.2" then one
merge per line). The real vocabulary has 49,408 ids; this one keeps the same layout with only the
merges the demo texts need:

  ids 0–255      the 256 byte symbols (GPT-2's bytes_to_unicode order)
  ids 256–511    the same symbols with `</w>` (a word's last symbol)
  ids 512–…      one id per merge, in merge order (the merged symbol)
  last two       <|startoftext|>, <|endoftext|>

Merges are learnt as BPE learns them (most frequent adjacent pair first, over the words of the
demo texts weighted by count) until every kept word is one token; then each word is encoded with
the real BPE rule (lowest-ranked pair first) and any word that does not come out whole gets its
merges appended (a merge ranked after every other cannot change a word that already ends whole).
Kept words: every pre-token of the demo texts with at least `min_count` occurrences (the grammar,
the junk vocabulary, file-name parts) plus the words of the zero-shot templates. Any other string
still encodes, through the byte symbols.

Encoding is OpenAI's simple_tokenizer (tools/reference/clip_tokenizer_ref.py, imported here):
html unescape twice, strip, collapse whitespace, lower-case, the CLIP pre-tokenizer regex, BPE.
"""
import json
import os
import sys
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

from clip_tokenizer_ref import SimpleTokenizer, basic_clean, bytes_to_unicode, whitespace_clean  # noqa: E402
import regex as re  # noqa: E402  (Debian: python3-regex; the reference needs \p{L})

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
PATTERN = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", re.IGNORECASE)

# Words of the zero-shot prompts (src/demo/evaluate-clip.ts): templates and class names.
PROMPT_WORDS = ["a", "an", "the", "of", "photo", "picture", "image", "drawing", "rendering", "simple", "shape",
                "on", "background", "small", "big", "plain", "colour", "color"]


def pre_tokens(text):
    """The pre-tokens simple_tokenizer cuts a text into (before byte mapping)."""
    return re.findall(PATTERN, whitespace_clean(basic_clean(text)).lower())


def symbols(word, byte_encoder):
    s = [byte_encoder[b] for b in word.encode("utf-8")]
    s[-1] += "</w>"
    return tuple(s)


def merge_word(word, pair):
    out, i = [], 0
    while i < len(word):
        if i < len(word) - 1 and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def bpe_encode(word, ranks):
    """The BPE rule of simple_tokenizer.bpe: repeatedly merge the lowest-ranked adjacent pair."""
    while len(word) > 1:
        pairs = {(a, b) for a, b in zip(word, word[1:])}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        word = merge_word(word, best)
    return word


def learn_merges(word_counts):
    """BPE training until every word is one symbol; ties broken by the pair's text (deterministic)."""
    be = bytes_to_unicode()
    words = {w: symbols(w, be) for w in word_counts}
    merges = []
    while True:
        pairs = Counter()
        for w, s in words.items():
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += word_counts[w]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        words = {w: merge_word(s, best) for w, s in words.items()}
    ranks = {m: i for i, m in enumerate(merges)}
    # The encoding rule may take another path than training did; append what a word still lacks.
    for w in sorted(word_counts):
        seg = bpe_encode(symbols(w, be), ranks)
        while len(seg) > 1:
            pair = (seg[0], seg[1])
            if pair not in ranks:
                ranks[pair] = len(merges)
                merges.append(pair)
            seg = bpe_encode(symbols(w, be), ranks)
    return merges


def demo_word_counts(texts, min_count=20, extra=PROMPT_WORDS):
    counts = Counter(t for text in texts for t in pre_tokens(text))
    kept = {w: n for w, n in counts.items() if n >= min_count and len(w.encode("utf-8")) > 1
            and w not in (SOT, EOT)}
    for w in extra:
        if len(w) > 1:
            kept.setdefault(w, 1)
    return kept


def vocab_of(merges):
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += [SOT, EOT]
    return {t: i for i, t in enumerate(vocab)}


def write_clip_tokenizer_files(out_dir, merges, context_length):
    """vocab.json, merges.txt (no trailing newline: simple_tokenizer keeps every line after the
    header), tokenizer_config.json and special_tokens_map.json as openai/clip-vit-base-patch32 has them."""
    os.makedirs(out_dir, exist_ok=True)
    vocab = vocab_of(merges)
    if len(set(vocab.values())) != len(vocab):
        raise ValueError("duplicate vocabulary entries")
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(["#version: 0.2"] + [f"{a} {b}" for a, b in merges]))
    special = {"bos_token": SOT, "eos_token": EOT, "unk_token": EOT, "pad_token": EOT}
    cfg = {"tokenizer_class": "CLIPTokenizer", "model_max_length": context_length, "do_lower_case": True,
           "errors": "replace", "add_prefix_space": False, **special}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=2)
    return vocab


class DemoClipTokenizer:
    """simple_tokenizer over a folder's files; rows as the runtime builds them: [sot, …, eot],
    cut to context_length with eot kept last, right-padded with the pad id (eot)."""

    def __init__(self, folder, context_length):
        self.ref = SimpleTokenizer(folder)
        self.sot = self.ref.encoder[SOT]
        self.eot = self.ref.encoder[EOT]
        self.pad_id = self.eot
        self.context_length = context_length
        self.vocab_size = len(self.ref.encoder)
        self.cache = {}

    def row(self, text):
        r = self.cache.get(text)
        if r is None:
            r = [self.sot] + self.ref.encode(text) + [self.eot]
            if len(r) > self.context_length:
                r = r[: self.context_length]
                r[-1] = self.eot
            self.cache[text] = r
        return r


def build(export_dir, out_dir, context_length, min_count=20):
    texts = []
    with open(os.path.join(export_dir, "pairs.jsonl")) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                texts += [r["web_text"], *r["captions"], *r["paraphrases"], *r["swapped"]]
    counts = demo_word_counts(texts, min_count)
    merges = learn_merges(counts)
    vocab = write_clip_tokenizer_files(out_dir, merges, context_length)
    tok = DemoClipTokenizer(out_dir, context_length)
    whole = [w for w in counts if len(tok.ref.encode(w)) == 1]
    if len(whole) != len(counts):
        raise AssertionError(f"words not single tokens: {sorted(set(counts) - set(whole))[:20]}")
    return {"words": len(counts), "merges": len(merges), "vocab_size": len(vocab)}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="build the demo CLIP tokenizer files")
    ap.add_argument("--data", required=True, help="a `capfilt demo-data export` folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--context-length", type=int, default=32)
    ap.add_argument("--min-count", type=int, default=20)
    a = ap.parse_args()
    print(json.dumps(build(a.data, a.out, a.context_length, a.min_count)))
