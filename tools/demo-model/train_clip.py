"""Trains the demo CLIP (HF CLIPModel layout) on a folder written by `capfilt demo-data export` and
exports a Hugging Face folder (config.json, model.safetensors, preprocessor_config.json, the
OpenAI-format tokenizer files).

usage: /usr/bin/python3 tools/demo-model/train_clip.py --data DIR --val DIR --out models/demo-clip
           [--minutes 25] [--vision-pretrain-minutes 12] [--threads 1] [--seed 0] [--log FILE]

Objective (the CLIP paper's): image and text embeddings, each a linear projection (no bias) of the
tower's pooled output, L2-normalised; logits = exp(logit_scale) · cosine over the batch's B images ×
B texts; symmetric cross-entropy (image→text and text→image, averaged). logit_scale starts at
log(1/0.07) and is clamped at log(100). Rows whose texts are true of several of the batch's images
(the same scene twice, or a partial description) count each such image as a positive, with the
target spread evenly over them — with one positive per row this is exactly the paper's loss.

Texts: per image a random correct caption of its scene (the export's `paraphrases`: both relation
orders, every listing order, three background wordings), a full stop added to 30% as web text has
it; with --partial P, that share of the texts is instead a true partial description of the scene
(one of its shapes, with or without its colour, with or without the background: "a circle",
"a red circle on a blue background"), generated from the scene. With --junk-negatives J, J junk
web texts of the training rows (file names, UI strings, boilerplate, spam) join each batch as
image→text negatives that no image matches (columns of the image→text softmax only). No swapped
or other one-attribute hard negatives are trained on.

Batches (--group G): half the batch is drawn at random, the other half in groups of G scenes that
share background colour and shape count, so that within a batch kinds and shape colours are what
tells scenes apart.

The ViT first gets vision_pretrain.py's attribute pre-training alone (its heads and targets:
per-patch kind and colour, class-token background / count / (kind, colour) pairs; 2D sine-cosine
position initialisation) for --vision-pretrain-minutes, as BLIP starts from a label-supervised ViT;
the same attribute loss then stays on as an auxiliary loss (--aux-weight) during the contrastive
phase, computed from the same forward pass, so every contrastive step keeps training kinds. The
heads are discarded at export: the folder holds a plain CLIPModel. --minutes is the whole budget,
pre-training included; the schedule follows wall time. The exported folder is rewritten at every
evaluation, so an interrupted run leaves a usable model.
"""
import argparse
import json
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from clip import CLIPModel, clip_state_dict, init_clip_weights, write_safetensors
from clip_tokenizer import DemoClipTokenizer, build as build_tokenizer
from data import IMAGE_MEAN, IMAGE_STD, load_images, load_rows, pixel_values
from vision_pretrain import KINDS, COLOURS, AttributeHeads, scene_targets, sincos_position_embedding

CONTEXT = 32
RELATION_WORDS = {"above": "above", "below": "below", "left": "to the left of", "right": "to the right of"}
INVERSE = {"above": "below", "below": "above", "left": "right", "right": "left"}
BACKGROUNDS = ["on {} background", "against {} background", "with {} background"]
ZERO_SHOT_TEMPLATE = "a photo of a {}."


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def make_config(vocab_size, sot, eot, image_size=64, patch=8, vh=128, vl=4, vheads=4, th=128, tl=3, theads=4, proj=64):
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": proj,
        "logit_scale_init_value": math.log(1 / 0.07),
        "initializer_factor": 1.0,
        "torch_dtype": "float32",
        "transformers_version": "4.37.0",
        "text_config": {
            "model_type": "clip_text_model", "vocab_size": vocab_size, "hidden_size": th,
            "intermediate_size": 4 * th, "num_hidden_layers": tl, "num_attention_heads": theads,
            "max_position_embeddings": CONTEXT, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
            "attention_dropout": 0.0, "initializer_range": 0.02, "initializer_factor": 1.0,
            "projection_dim": proj, "bos_token_id": sot, "eos_token_id": eot, "pad_token_id": eot,
        },
        "vision_config": {
            "model_type": "clip_vision_model", "hidden_size": vh, "intermediate_size": 4 * vh,
            "num_hidden_layers": vl, "num_attention_heads": vheads, "num_channels": 3,
            "image_size": image_size, "patch_size": patch, "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5, "attention_dropout": 0.0, "initializer_range": 0.02,
            "initializer_factor": 1.0, "projection_dim": proj,
        },
    }


def preprocessor_config(size):
    return {
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": size},
        "resample": 3, "do_center_crop": True, "crop_size": {"height": size, "width": size},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": IMAGE_MEAN, "image_std": IMAGE_STD, "do_convert_rgb": True,
    }


# ---------------------------------------------------------------- scene semantics (as src/demo/captions.ts)

def scene_key(scene):
    objs = [f"{s['colour']} {s['kind']}" for s in scene["shapes"]]
    rel = ""
    if len(objs) == 2 and scene.get("relation"):
        a, b = objs
        r = scene["relation"]
        rel = {"above": f"vertical:{a}|{b}", "below": f"vertical:{b}|{a}",
               "left": f"horizontal:{a}|{b}", "right": f"horizontal:{b}|{a}"}[r]
    return f"{scene['background']};{','.join(sorted(objs))};{rel}"


def partial_description(scene, rng):
    """A true statement naming one shape (kind, colour optional) and optionally the background;
    returned with its constraint (colour or None, kind, background or None)."""
    s = rng.choice(scene["shapes"])
    colour = s["colour"] if rng.random() < 0.6 else None
    bg = scene["background"] if rng.random() < 0.5 else None
    obj = f"{article(colour)} {colour} {s['kind']}" if colour else f"{article(s['kind'])} {s['kind']}"
    text = obj if bg is None else f"{obj} {rng.choice(BACKGROUNDS).format(article(bg) + ' ' + bg)}"
    return text, (colour, s["kind"], bg)


def satisfies(scene, constraint):
    colour, kind, bg = constraint
    if bg is not None and scene["background"] != bg:
        return False
    return any(s["kind"] == kind and (colour is None or s["colour"] == colour) for s in scene["shapes"])


class Batcher:
    def __init__(self, rows, tok, rng, batch, group, partial):
        self.rows, self.tok, self.rng = rows, tok, rng
        self.batch, self.group, self.partial = batch, group, partial
        self.keys = [scene_key(r["scene"]) for r in rows]
        groups = {}
        for i, r in enumerate(rows):
            groups.setdefault((r["scene"]["background"], len(r["scene"]["shapes"])), []).append(i)
        self.groups = list(groups.values())

    def indices(self):
        n_grouped = (self.batch // 2) // self.group * self.group if self.group > 1 else 0
        idx = []
        while len(idx) < n_grouped:
            members = self.rng.choice(self.groups)
            idx += self.rng.sample(members, min(self.group, len(members)))
        idx = idx[:n_grouped]
        taken = set(idx)
        while len(idx) < self.batch:
            i = self.rng.randrange(len(self.rows))
            if i not in taken:
                taken.add(i)
                idx.append(i)
        return idx

    def texts(self, idx):
        """Texts and positives [B images, B texts] (text j is true of image i)."""
        texts, cons = [], []
        for i in idx:
            r = self.rows[i]
            if self.rng.random() < self.partial:
                t, c = partial_description(r["scene"], self.rng)
            else:
                t, c = self.rng.choice(r["paraphrases"]), None
            if self.rng.random() < 0.3:
                t += "."
            texts.append(t)
            cons.append(c)
        pos = torch.zeros(len(idx), len(idx))
        for a, i in enumerate(idx):
            scene = self.rows[i]["scene"]
            for b, j in enumerate(idx):
                pos[a, b] = float(self.keys[i] == self.keys[j] if cons[b] is None else satisfies(scene, cons[b]))
        return texts, pos



def encode_texts(tok, texts):
    """input_ids and attention_mask, padded to the longest row with the pad id, as the runtime pads."""
    rows = [tok.row(t) for t in texts]
    n = max(len(r) for r in rows)
    ids = torch.full((len(rows), n), tok.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def contrastive_loss(img, txt, scale, pos, extra=None):
    """Symmetric cross-entropy; targets spread evenly over each row's / column's positives.
    `extra`: embeddings of texts no image matches (junk), appended as image→text negatives only."""
    logits = scale * img @ txt.T
    i2t = logits if extra is None else torch.cat([logits, scale * img @ extra.T], dim=1)
    t_i2t = pos / pos.sum(1, keepdim=True)
    if extra is not None:
        t_i2t = torch.cat([t_i2t, torch.zeros(len(img), len(extra))], dim=1)
    t_t2i = (pos / pos.sum(0, keepdim=True)).T
    li = -(t_i2t * F.log_softmax(i2t, dim=1)).sum(1).mean()
    lt = -(t_t2i * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return (li + lt) / 2, logits


class PretrainView(torch.nn.Module):
    """The CLIP ViT as vision_pretrain.py wants it: every token through post_layernorm."""

    def __init__(self, vision_model):
        super().__init__()
        self.vision_model = vision_model

    def forward(self, pixel_values):
        last, _ = self.vision_model(pixel_values)
        return self.vision_model.post_layernorm(last)


@torch.no_grad()
def evaluate(model, tok, rows, images):
    """PyTorch figures on the validation rows: mean cosine per web-text label, the share of
    correct texts above the midpoint between correct and other means, zero-shot kind and colour
    accuracy on one-shape scenes ("a photo of a {}."), in-batch top-1 retrieval over 100 images."""
    model.eval()
    img = torch.cat([model.image_embeds(pixel_values(images[s : s + 100])) for s in range(0, len(rows), 100)])

    def enc(texts):
        out = []
        for s in range(0, len(texts), 256):
            ids, mask = encode_texts(tok, texts[s : s + 256])
            out.append(model.text_embeds(ids, mask))
        return torch.cat(out)

    web = enc([r["web_text"] for r in rows])
    cos = (img * web).sum(-1)
    by = {}
    for lab in ("correct", "mismatched", "swapped", "junk"):
        sel = torch.tensor([r["label"] == lab for r in rows])
        by[lab] = cos[sel]
    thr = float((by["correct"].mean() + torch.cat([by["mismatched"], by["junk"]]).mean()) / 2)
    one = [i for i, r in enumerate(rows) if len(r["scene"]["shapes"]) == 1]
    kinds = enc([ZERO_SHOT_TEMPLATE.format(k) for k in KINDS])
    colours = enc([ZERO_SHOT_TEMPLATE.format(f"{c} shape") for c in COLOURS])
    kind_pred = (img[one] @ kinds.T).argmax(-1)
    col_pred = (img[one] @ colours.T).argmax(-1)
    kind_acc = float(np.mean([KINDS[int(p)] == rows[i]["scene"]["shapes"][0]["kind"] for p, i in zip(kind_pred, one)]))
    col_acc = float(np.mean([COLOURS[int(p)] == rows[i]["scene"]["shapes"][0]["colour"] for p, i in zip(col_pred, one)]))
    caps = enc([r["caption"] for r in rows[:100]])
    top1 = float(((img[:100] @ caps.T).argmax(-1) == torch.arange(100)).float().mean())
    model.train()
    return {
        "cos": {k: round(float(v.mean()), 4) for k, v in by.items()},
        "mid_threshold": round(thr, 4),
        "kept_correct": round(float((by["correct"] >= thr).float().mean()), 4),
        "rejected_mismatched": round(float((by["mismatched"] < thr).float().mean()), 4),
        "rejected_junk": round(float((by["junk"] < thr).float().mean()), 4),
        "rejected_swapped": round(float((by["swapped"] < thr).float().mean()), 4),
        "zero_shot_kind": round(kind_acc, 4), "zero_shot_colour": round(col_acc, 4),
        "top1_100": round(top1, 4),
    }


def export(model, config, out_dir, image_size):
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, "model.safetensors.tmp")
    write_safetensors(tmp, clip_state_dict(model))
    os.replace(tmp, os.path.join(out_dir, "model.safetensors"))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out_dir, "preprocessor_config.json"), "w") as f:
        json.dump(preprocessor_config(image_size), f, indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=25)
    ap.add_argument("--vision-pretrain-minutes", type=float, default=12)
    ap.add_argument("--eval-minutes", type=float, default=5, help="evaluate and export every this many minutes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--group", type=int, default=12)
    ap.add_argument("--partial", type=float, default=0.25)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--junk-negatives", type=int, default=16, help="junk web texts of the training rows per batch, as extra image→text negatives")
    ap.add_argument("--aux-weight", type=float, default=1.0, help="attribute loss on the ViT during the contrastive phase (0: off)")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--vision-hidden", type=int, default=96)
    ap.add_argument("--vision-layers", type=int, default=3)
    ap.add_argument("--text-hidden", type=int, default=128)
    ap.add_argument("--text-layers", type=int, default=3)
    ap.add_argument("--projection", type=int, default=64)
    ap.add_argument("--log")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many contrastive steps (timing runs)")
    a = ap.parse_args()

    start = time.time()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    log = open(a.log, "a") if a.log else None

    def emit(obj):
        obj = {"t": round(time.time() - start, 1), **obj}
        line = json.dumps(obj)
        print(line, flush=True)
        if log:
            log.write(line + "\n")
            log.flush()

    tok_info = build_tokenizer(a.data, a.out, CONTEXT)
    tok = DemoClipTokenizer(a.out, CONTEXT)
    config = make_config(tok.vocab_size, tok.sot, tok.eot, a.image_size, 8, a.vision_hidden, a.vision_layers, 4,
                         a.text_hidden, a.text_layers, 4, a.projection)
    model = CLIPModel(config)
    init_clip_weights(model)
    grid = a.image_size // 8
    with torch.no_grad():
        model.vision_model.embeddings.position_embedding.weight.copy_(sincos_position_embedding(grid, a.vision_hidden)[0])
    n_params = sum(p.numel() for p in model.parameters())

    rows = load_rows(a.data)
    images = load_images(a.data, rows, a.image_size)
    val_rows = load_rows(a.val)
    val_images = load_images(a.val, val_rows, a.image_size)
    emit({"event": "start", "params": n_params, "rows": len(rows), "tokenizer": tok_info, "args": vars(a),
          "torch": torch.__version__, "threads": torch.get_num_threads()})

    # Phase 1: the ViT alone on scene-attribute labels (vision_pretrain.py's heads and targets).
    heads = AttributeHeads(a.vision_hidden)
    targets = scene_targets(rows, grid)
    view = PretrainView(model.vision_model)
    vparams = list(model.vision_model.parameters()) + list(heads.parameters())
    vopt = torch.optim.AdamW(vparams, lr=1e-3, weight_decay=0.05)
    vstart, vbudget, vsteps = time.time(), a.vision_pretrain_minutes * 60, 0
    while vbudget > 0 and (progress := (time.time() - vstart) / vbudget) < 1.0:
        cur = 1e-3 * min(1.0, (vsteps + 1) / 100) * (0.5 * (1 + math.cos(math.pi * progress)) * 0.95 + 0.05)
        for g in vopt.param_groups:
            g["lr"] = cur
        idx = rng.sample(range(len(rows)), 32)
        loss, parts = heads.losses(view(pixel_values(images[idx])), {k: v[idx] for k, v in targets.items()})
        vopt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vparams, 1.0)
        vopt.step()
        vsteps += 1
        if vsteps % 100 == 0:
            emit({"event": "vision_step", "step": vsteps, "lr": round(cur, 6), **{k: round(v, 4) for k, v in parts.items()}})
    if vsteps:
        with torch.no_grad():
            view.eval()
            _, parts = heads.losses(view(pixel_values(val_images)), scene_targets(val_rows, grid))
            view.train()
        emit({"event": "vision_val", "steps": vsteps, **{k: round(v, 4) for k, v in parts.items()}})

    batcher = Batcher(rows, tok, rng, a.batch, a.group, a.partial)
    junk = sorted({r["web_text"] for r in rows if r["label"] == "junk"})
    decay, no_decay = [], []
    for name, p in list(model.named_parameters()) + [("heads." + n, p) for n, p in heads.named_parameters()]:
        (decay if p.ndim >= 2 and "embedding" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.98), eps=1e-6)
    clip_start = time.time()
    budget = a.minutes * 60 - (clip_start - start)
    next_eval = clip_start + a.eval_minutes * 60
    step = 0
    max_scale = math.log(100)
    model.train()
    while (progress := (time.time() - clip_start) / budget) < 1.0:
        cur = a.lr * min(1.0, (step + 1) / 100) * (0.5 * (1 + math.cos(math.pi * progress)) * 0.95 + 0.05)
        for g in opt.param_groups:
            g["lr"] = cur
        idx = batcher.indices()
        texts, pos = batcher.texts(idx)
        last, pooled = model.vision_model(pixel_values(images[idx]))
        img = F.normalize(model.visual_projection(pooled), dim=-1)
        if a.junk_negatives > 0:
            jids, jmask = encode_texts(tok, texts + rng.sample(junk, a.junk_negatives))
            both = model.text_embeds(jids, jmask)
            txt, extra = both[: len(texts)], both[len(texts):]
        else:
            txt, extra = model.text_embeds(*encode_texts(tok, texts)), None
        closs, logits = contrastive_loss(img, txt, model.logit_scale.exp(), pos, extra)
        loss = closs
        if a.aux_weight > 0:
            aux, parts = heads.losses(model.vision_model.post_layernorm(last), {k: v[idx] for k, v in targets.items()})
            loss = closs + a.aux_weight * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decay + no_decay, 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, max_scale)
        step += 1
        if step % 50 == 0:
            with torch.no_grad():
                acc = float(pos.gather(1, logits.argmax(1, keepdim=True)).mean())
            more = {"aux": round(aux.item(), 4), "kind_acc": round(parts["kind_acc"], 4)} if a.aux_weight > 0 else {}
            emit({"event": "step", "step": step, "lr": round(cur, 6), "loss": round(closs.item(), 4),
                  "i2t_top1_pos": round(acc, 4), "scale": round(float(model.logit_scale.exp()), 2), **more})
        if a.max_steps and step >= a.max_steps:
            break
        if time.time() >= next_eval:
            emit({"event": "eval", "step": step, **evaluate(model, tok, val_rows, val_images)})
            export(model, config, a.out, a.image_size)
            next_eval = time.time() + a.eval_minutes * 60
    final = evaluate(model, tok, val_rows, val_images)
    export(model, config, a.out, a.image_size)
    size = os.path.getsize(os.path.join(a.out, "model.safetensors"))
    emit({"event": "final", "vision_steps": vsteps, "clip_steps": step, "params": n_params, "bytes": size,
          "wall_min": round((time.time() - start) / 60, 2), "logit_scale_exp": round(float(model.logit_scale.exp()), 3), **final})


if __name__ == "__main__":
    main()
