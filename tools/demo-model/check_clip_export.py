"""Checks an exported demo CLIP folder end to end: the embeddings clip.py computes in PyTorch
(PIL bicubic resize as CLIPImageProcessor does on these square images, the demo tokenizer) and the
ones the TypeScript runtime computes (`capfilt embed --json`, graphs built from the same folder)
for the same image files and texts, including texts padded in a batch with longer ones (the text
tower pools at the first end-of-text token). Exit status 0 only if every embedding agrees within
--tol (default 1e-4).

usage: /usr/bin/python3 tools/demo-model/check_clip_export.py --model models/demo-clip --data DIR [--images 8]
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from clip import CLIPModel, load_clip
from clip_tokenizer import DemoClipTokenizer
from data import load_rows, pixel_values

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo-clip"))
    ap.add_argument("--data", required=True)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    config = json.load(open(os.path.join(a.model, "config.json")))
    model = CLIPModel(config).eval()
    load_clip(model, os.path.join(a.model, "model.safetensors"))
    size = config["vision_config"]["image_size"]
    tok = DemoClipTokenizer(a.model, config["text_config"]["max_position_embeddings"])
    rows = load_rows(a.data)[: a.images]
    files = [os.path.join(a.data, r["file"]) for r in rows]
    texts = [r["web_text"] for r in rows] + ["a photo of a circle.", "", "a red circle, a blue star and a green square on a white background"]

    arr = np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size), resample=Image.BICUBIC)) for f in files])
    with torch.no_grad():
        img = model.image_embeds(pixel_values(arr))
        rows_ = [tok.row(t) for t in texts]
        n = max(len(r) for r in rows_)
        ids = torch.tensor([r + [tok.pad_id] * (n - len(r)) for r in rows_])
        mask = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows_])
        txt = model.text_embeds(ids, mask)

    cmd = ["npx", "capfilt", "embed", "--model", a.model, "--json", "--threads", "1"]
    for t in texts:
        cmd += ["--text", t]
    res = subprocess.run(cmd + ["--", *files], cwd=ROOT, capture_output=True, text=True, check=True)
    out = json.loads(res.stdout)
    ts_img = torch.tensor([im["embedding"] for im in out["images"]])
    ts_txt = torch.tensor([t["embedding"] for t in out["texts"]])
    err_img = float((ts_img - img).abs().max())
    err_txt = float((ts_txt - txt).abs().max())
    err_scale = abs(out["logit_scale"] - float(model.logit_scale.exp()))
    ok = err_img <= a.tol and err_txt <= a.tol and err_scale <= 1e-3
    print(json.dumps({"images": len(files), "texts": len(texts), "max_abs_err_image_embeds": err_img,
                      "max_abs_err_text_embeds": err_txt, "logit_scale_err": err_scale, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
