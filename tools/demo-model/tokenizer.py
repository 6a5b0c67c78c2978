"""A small BERT WordPiece tokenizer: vocabulary built from the demo texts, encoding that follows
the Hugging Face `tokenizers` pipeline the runtime uses (BertNormalizer with lowercase,
BertPreTokenizer, WordPiece with '##' continuations), and writers for the HF tokenizer files.
"""
import json
import os
import string
import unicodedata
from collections import Counter

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]
MAX_CHARS_PER_WORD = 100


def _is_punct(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def normalize(text):
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
            continue
        out.append(" " if ch.isspace() else ch)
    text = unicodedata.normalize("NFD", "".join(out).lower())
    return "".join(ch for ch in text if unicodedata.category(ch) != "Mn")


def pre_tokenize(text):
    words, cur = [], []
    for ch in text:
        if ch.isspace():
            if cur:
                words.append("".join(cur))
                cur = []
        elif _is_punct(ch):
            if cur:
                words.append("".join(cur))
                cur = []
            words.append(ch)
        else:
            cur.append(ch)
    if cur:
        words.append("".join(cur))
    return words


class WordPiece:
    def __init__(self, vocab):
        self.vocab = vocab
        self.ids = {t: i for i, t in enumerate(vocab)}
        self.id = {t: self.ids[t] for t in SPECIALS}

    def word_ids(self, word):
        if len(word) > MAX_CHARS_PER_WORD:
            return [self.id["[UNK]"]]
        pieces, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.ids:
                    found = self.ids[sub]
                    break
                end -= 1
            if found is None:
                return [self.id["[UNK]"]]
            pieces.append(found)
            start = end
        return pieces

    def encode(self, text, max_length=None):
        """[CLS] tokens [SEP], truncated (keeping [SEP]) to max_length."""
        ids = [i for w in pre_tokenize(normalize(text)) for i in self.word_ids(w)]
        if max_length is not None:
            ids = ids[: max_length - 2]
        return [self.id["[CLS]"]] + ids + [self.id["[SEP]"]]

    def decode(self, ids):
        toks = [self.vocab[i] for i in ids if self.vocab[i] not in SPECIALS]
        out = ""
        for t in toks:
            out += t[2:] if t.startswith("##") else (" " + t if out else t)
        return out


def build_vocab(texts, min_count=3):
    """Specials, single characters (so no ASCII word is [UNK]), then frequent alphabetic words."""
    counts = Counter(w for t in texts for w in pre_tokenize(normalize(t)))
    chars = list(string.ascii_lowercase) + list(string.digits)
    vocab = SPECIALS + [c for c in string.punctuation] + chars + ["##" + c for c in chars]
    seen = set(vocab)
    words = sorted(w for w, c in counts.items() if c >= min_count and w.isalpha() and len(w) > 1 and w not in seen)
    for w in ["picture", "of"]:
        if w not in words and w not in seen:
            words.append(w)
    return vocab + words


def write_tokenizer_files(out_dir, vocab, model_max_length):
    os.makedirs(out_dir, exist_ok=True)
    ids = {t: i for i, t in enumerate(vocab)}
    added = [{"id": ids[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for t in SPECIALS]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in ["[CLS]", "[SEP]"]},
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": MAX_CHARS_PER_WORD, "vocab": ids},
    }
    with open(os.path.join(out_dir, "tokenizer.json"), "w") as f:
        json.dump(tok, f, indent=1)
    cfg = {
        "tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": model_max_length,
        "bos_token": "[DEC]", "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
        "unk_token": "[UNK]", "mask_token": "[MASK]", "additional_special_tokens": ["[ENC]"],
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    special = {k: cfg[k] for k in ["bos_token", "cls_token", "sep_token", "pad_token", "unk_token", "mask_token",
                                    "additional_special_tokens"]}
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=2)
    with open(os.path.join(out_dir, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
