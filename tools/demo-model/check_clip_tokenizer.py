"""Checks that the TypeScript CLIP tokenizer (src/models/clip/tokenizer.ts, via `capfilt tokenize`)
and the Python reference (tools/reference/clip_tokenizer_ref.py) give identical rows on a
tokenizer folder: the demo texts of an export (every web text, caption, paraphrase and swapped
caption of the first rows), the zero-shot prompts, and strings outside the demo vocabulary
(unicode, emoji, entities, numbers, long spam that is truncated). Exit status 0 only if all match.

usage: /usr/bin/python3 tools/demo-model/check_clip_tokenizer.py --model models/demo-clip --data DIR [--rows 300]
"""
import argparse
import json
import os
import subprocess
import sys

from clip_tokenizer import DemoClipTokenizer, pre_tokens

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KINDS = ["circle", "square", "triangle", "star", "diamond"]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
TEMPLATES = ["a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a drawing of a {}.",
             "a rendering of a {}.", "a simple drawing of a {}.", "a photo of the {}.", "a {} on a plain background."]
ODD = [
    "", " ", "  ", "A RED Circle, ABOVE a blue SQUARE.", "a red circle!!! on a blue background???",
    "Tom &amp; Jerry &lt;3", "naïve café façade", "北京欢迎你", "👍🏽 thumbs up 🎉", "it's the dog's bone",
    "IMG_0042.JPG", "Screenshot 2023-11-05 at 10.42.13 PM.png", "www.bonuscasino.com 1,000,000 -42",
    "zebra quantum xylophone", "a mauve hexagon on a teal background", "\t tabs\nand newlines \u00a0",
    " ".join(["buy cheap best price free shipping"] * 12),
]


def texts_of(data_dir, rows):
    out = []
    with open(os.path.join(data_dir, "pairs.jsonl")) as f:
        for i, line in enumerate(f):
            if i >= rows:
                break
            r = json.loads(line)
            out += [r["web_text"], *r["captions"][:2], *r["paraphrases"][-1:], *r["swapped"]]
    out += [t.format(c) for t in TEMPLATES for c in KINDS + [f"{c} shape" for c in COLOURS]]
    return list(dict.fromkeys(out + ODD))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo-clip"))
    ap.add_argument("--data", required=True)
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--context-length", type=int, default=32)
    a = ap.parse_args()
    tok = DemoClipTokenizer(a.model, a.context_length)
    texts = texts_of(a.data, a.rows)
    got = []
    for s in range(0, len(texts), 200):
        chunk = texts[s : s + 200]
        res = subprocess.run(["npx", "capfilt", "tokenize", "--model", a.model, "--json", "--", *chunk],
                             cwd=ROOT, capture_output=True, text=True, check=True)
        got += [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    if len(got) != len(texts):
        print(f"FAIL: {len(got)} rows from capfilt tokenize for {len(texts)} texts")
        return 1
    bad = [(t, g["ids"], tok.row(t)) for t, g in zip(texts, got) if g["ids"] != tok.row(t)]
    # Texts with a word the vocabulary does not hold whole (spelled with several byte/merge tokens).
    split = sum(1 for t in texts if any(len(tok.ref.encode(w)) > 1 for w in pre_tokens(t)))
    for t, g, w in bad[:10]:
        print(f"FAIL {t!r}: ts {g} != python {w}")
    print(json.dumps({"texts": len(texts), "mismatches": len(bad), "texts_with_split_words": split,
                      "vocab_size": tok.vocab_size, "longest_row": max(len(tok.row(t)) for t in texts)}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
