"""PyTorch reference for `npm run bench:capfilt -- --hf`: the CapFilt row path as Hugging Face
transformers + PyTorch run it, on the same rows as the TypeScript pipeline.

transformers cannot be installed here (no PyPI; Debian has no python3-transformers), so the
model is tools/demo-model/blip.py: BLIP's modules written out again with HF's module tree and
state-dict names (BlipForConditionalGeneration, BlipForImageTextRetrieval), loaded strictly
from the same model.safetensors. Decoding follows HF generate with use_cache=True: the
prefix once, then one token per step with past_key_values (self-attention K/V concatenated
along the sequence, as BlipTextSelfAttention does; cross-attention K/V of the image computed
at the first step and reused). Install (Debian bookworm, as root), run with Debian's python:

    apt-get install -y python3-torch libopenblas0-openmp python3-pil
    /usr/bin/python3 tools/reference/blip_capfilt_torch.py --captioner DIR --filter DIR \
        --rows rows.jsonl --prefix-ids 30522,1000,1001,1002 --new-tokens 20 [--batch 8] [--threads 2]

Per batch of --batch rows: download each url (urllib, --batch at a time), decode and resize to
the vision size with PIL's bicubic (BlipImageProcessor: resize, 1/255, OpenAI CLIP mean/std),
caption K=1 greedy for exactly --new-tokens tokens (min_length = max_length, as the TypeScript
side is configured), then ITM and ITC of two texts per image (the web text and the synthetic
caption's ids), as BlipForImageTextRetrieval with use_itm_head True and False. The web text is
tokenized by tools/demo-model/tokenizer.py (BERT WordPiece over the model's vocab.txt); the
synthetic caption is scored from its generated ids ([CLS] ids [SEP]) without decoding and
re-tokenizing (a few microseconds either way). Prints one JSON object: rows, seconds,
rows_per_s, and seconds per stage (download, caption, filter).
"""
import argparse
import io
import json
import os
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "demo-model"))
import blip  # noqa: E402
from tokenizer import WordPiece  # noqa: E402

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def load(cls, folder):
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    model = cls(config)
    blip.load_hf_weights(model, os.path.join(folder, "model.safetensors"))
    return model.eval(), config


def pixels(raw, size):
    im = Image.open(io.BytesIO(raw)).convert("RGB").resize((size, size), Image.BICUBIC)
    a = (np.asarray(im, dtype=np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(a.transpose(2, 0, 1).copy())


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def split(x, heads):
    b, n, h = x.shape
    return x.view(b, n, heads, h // heads).transpose(1, 2)


def merge(x):
    b, heads, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, heads * d)


def attend(q, k, v, additive=None):
    att = (q @ k.transpose(-1, -2)) / (q.shape[-1] ** 0.5)
    if additive is not None:
        att = att + additive
    return att.softmax(-1) @ v


@torch.no_grad()
def greedy_cached(model, image_embeds, prefix, new_tokens):
    """HF greedy_search with past_key_values, for exactly new_tokens tokens."""
    dec = model.text_decoder
    layers = dec.bert.encoder.layer
    heads = layers[0].attention.self.heads
    ids = prefix
    past = [None] * len(layers)
    cross = [None] * len(layers)
    step_ids = prefix
    for _ in range(new_tokens):
        past_len = 0 if past[0] is None else past[0][0].shape[2]
        x = dec.bert.embeddings(step_ids, past_length=past_len)
        n = step_ids.shape[1]
        causal = None
        if n > 1:
            tri = torch.tril(torch.ones(n, past_len + n))
            causal = ((1.0 - tri) * -10000.0)[None, None]
        for i, layer in enumerate(layers):
            sa = layer.attention.self
            k, v = split(sa.key(x), heads), split(sa.value(x), heads)
            if past[i] is not None:
                k = torch.cat([past[i][0], k], dim=2)
                v = torch.cat([past[i][1], v], dim=2)
            past[i] = (k, v)
            h = layer.attention.output(merge(attend(split(sa.query(x), heads), k, v, causal)), x)
            ca = layer.crossattention.self
            if cross[i] is None:
                cross[i] = (split(ca.key(image_embeds), heads), split(ca.value(image_embeds), heads))
            h = layer.crossattention.output(merge(attend(split(ca.query(h), heads), *cross[i])), h)
            x = layer.output(layer.intermediate(h), h)
        logits = dec.cls(x[:, -1:])[:, -1]
        nxt = logits.argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
        step_ids = nxt
    return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--captioner", required=True)
    ap.add_argument("--filter", required=True)
    ap.add_argument("--rows", required=True)
    ap.add_argument("--prefix-ids", required=True)
    ap.add_argument("--new-tokens", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cap, cap_cfg = load(blip.BlipForConditionalGeneration, a.captioner)
    fil, fil_cfg = load(blip.BlipForImageTextRetrieval, a.filter)
    with open(os.path.join(a.filter, "vocab.txt")) as f:
        tok = WordPiece([line.rstrip("\n") for line in f])
    max_text = fil_cfg["text_config"]["max_position_embeddings"]
    with open(a.rows) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    size = cap_cfg["vision_config"]["image_size"]
    prefix = [int(x) for x in a.prefix_ids.split(",")]
    cls_id, sep_id, pad_id = tok.id["[CLS]"], tok.id["[SEP]"], tok.id["[PAD]"]
    stages = {"download": 0.0, "caption": 0.0, "filter": 0.0}
    pool = ThreadPoolExecutor(max_workers=a.batch)
    t_all = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(rows), a.batch):
            chunk = rows[s : s + a.batch]
            t = time.perf_counter()
            px = torch.stack([pixels(raw, size) for raw in pool.map(fetch, [r["url"] for r in chunk])])
            stages["download"] += time.perf_counter() - t
            t = time.perf_counter()
            emb = cap.vision_model(px)
            ids = greedy_cached(cap, emb, torch.tensor([prefix] * len(chunk)), a.new_tokens)
            stages["caption"] += time.perf_counter() - t
            t = time.perf_counter()
            femb = fil.vision_model(px)
            synthetic = [[cls_id] + row[len(prefix):].tolist() + [sep_id] for row in ids]
            web = [tok.encode(r["caption"], max_text) for r in chunk]
            texts = [t_ for pair in zip(web, synthetic) for t_ in pair]
            n = max(len(x) for x in texts)
            input_ids = torch.tensor([x + [pad_id] * (n - len(x)) for x in texts])
            mask = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x in texts])
            image_index = torch.arange(len(chunk)).repeat_interleave(2)
            fil.itm_logits(femb, input_ids, mask, image_index=image_index).softmax(-1)
            (fil.text_feat(input_ids, mask) * fil.image_feat(femb)[image_index]).sum(-1)
            stages["filter"] += time.perf_counter() - t
    seconds = time.perf_counter() - t_all
    print(json.dumps({
        "rows": len(rows), "seconds": round(seconds, 3), "rows_per_s": round(len(rows) / seconds, 3),
        "stage_seconds": {k: round(v, 3) for k, v in stages.items()}, "threads": a.threads,
        "torch": torch.__version__, "new_tokens": a.new_tokens, "batch": a.batch,
    }))


if __name__ == "__main__":
    main()
