"""Loads test/fixtures/parity/clip-t1 (a tiny CLIPModel and the outputs Hugging Face transformers
computed for it) into clip.py's modules and compares every tower output, the pooled index, the
similarity logits and the embeddings of the recorded preprocessing. Exit status 0 only if all
match within 1e-4 — proof that clip.py is HF's function (as check_parity.py is for blip.py).

usage: /usr/bin/python3 tools/demo-model/check_clip_parity.py [parity-set-dir]
"""
import json
import os
import sys

import numpy as np
import torch

from clip import CLIPModel, load_clip

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SET = os.path.join(HERE, "..", "..", "test", "fixtures", "parity", "clip-t1")
TOL = 1e-4


def tensor(obj):
    dtype = np.int64 if obj["dtype"] == "int64" else np.float32
    return torch.from_numpy(np.asarray(obj["data"], dtype=dtype).reshape(obj["shape"]))


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_SET)
    vec = json.load(open(os.path.join(root, "vectors.json")))
    config = json.load(open(os.path.join(root, "model", "config.json")))
    model = CLIPModel(config).eval()
    load_clip(model, os.path.join(root, "model", "model.safetensors"))
    failures = []

    def check(name, got, want):
        got, want = got.detach(), tensor(want)
        if got.numel() != want.numel():
            failures.append(f"{name}: {got.numel()} values, want {want.numel()}")
            print(f"FAIL {name}: shape {tuple(got.shape)} != {tuple(want.shape)}")
            return
        got = got.reshape(want.shape)
        if want.dtype == torch.int64:
            ok = bool(torch.equal(got.long(), want))
            print(f"{'ok  ' if ok else 'FAIL'} {name}: exact")
        else:
            err = (got.double() - want.double()).abs().max().item() if want.numel() else 0.0
            ok = err <= TOL
            print(f"{'ok  ' if ok else 'FAIL'} {name}: max abs err {err:.2e}")
        if not ok:
            failures.append(name)

    inputs = vec["inputs"]
    with torch.no_grad():
        pv = tensor(inputs["pixel_values"])
        last, pooled = model.vision_model(pv)
        proj = model.visual_projection(pooled)
        img = proj / proj.norm(dim=-1, keepdim=True)
        vision = {"last_hidden_state": last, "pooler_output": pooled, "image_embeds_unnormalized": proj, "image_embeds": img}
        for name, want in vec["vision"].items():
            check(f"vision.{name}", vision[name], want)

        ids, mask = tensor(inputs["input_ids"]), tensor(inputs["attention_mask"])
        last, pooled = model.text_model(ids, mask)
        proj = model.text_projection(pooled)
        txt = proj / proj.norm(dim=-1, keepdim=True)
        text = {"last_hidden_state": last, "pooler_output": pooled, "pool_index": model.text_model.pool_index(ids),
                "text_embeds_unnormalized": proj, "text_embeds": txt,
                "pooler_output_without_attention_mask": model.text_model(ids, None)[1]}
        for name, want in vec["text"].items():
            check(f"text.{name}", text[name], want)

        logits_per_image, logits_per_text = model(ids, pv, mask)
        scale = model.logit_scale.exp()
        sim = {"cosine": img @ txt.T, "logit_scale_exp": scale.reshape(1), "logits_per_image": logits_per_image,
               "logits_per_text": logits_per_text}
        for name, want in vec["similarity"].items():
            check(f"similarity.{name}", sim[name], want)

        pre = vec.get("preprocess", {})
        keys = sorted((k for k in pre if k.startswith("image_") and "pixel_values" in pre[k]), key=lambda k: int(k[6:]))
        if keys and "image_embeds" in pre:
            px = torch.stack([tensor(pre[k]["pixel_values"]).reshape(pv.shape[1:]) for k in keys])
            check("preprocess.image_embeds (recorded pixel_values)", model.image_embeds(px), pre["image_embeds"])

    if failures:
        print(f"PARITY FAILED ({len(failures)}): {', '.join(failures)}")
        sys.exit(1)
    print(f"parity OK: {os.path.basename(root)} reproduced within {TOL} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
