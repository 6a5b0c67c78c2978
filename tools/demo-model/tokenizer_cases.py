"""Writes test/fixtures/demo/tokenizer-cases.json: texts of the demo domain (captions, every junk
kind, edge cases) with the ids this trainer's tokenizer gave them, so that a TypeScript test can
check that the runtime tokenizes exactly as the model was trained.

usage: /usr/bin/python3 tools/demo-model/tokenizer_cases.py --data DIR --model models/demo/filter
"""
import argparse
import json
import os

from data import load_rows
from tokenizer import WordPiece

HERE = os.path.dirname(os.path.abspath(__file__))
EDGE = ["", " ", "A Red CIRCLE, above a blue square.", "Ünïcödé café naïve", "IMG_2031.jpg", "don't stop!!",
        "a picture of ", "x" * 120, "tabs\tand\nnewlines", "Screenshot 2019-03-12 at 10.42.11.png"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--n", type=int, default=300)
    args = p.parse_args()
    with open(os.path.join(args.model, "vocab.txt")) as f:
        tok = WordPiece(f.read().splitlines())
    rows = load_rows(args.data)[: args.n]
    texts = EDGE + [r["web_text"] for r in rows] + [r["swapped"][0] for r in rows[:50]]
    cases = [{"text": t, "ids": tok.encode(t)} for t in texts]
    out = os.path.join(HERE, "..", "..", "test", "fixtures", "demo", "tokenizer-cases.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"model": "models/demo/filter", "cases": cases}, f, indent=0)
    print(f"{len(cases)} cases -> {os.path.relpath(out)}")


if __name__ == "__main__":
    main()
