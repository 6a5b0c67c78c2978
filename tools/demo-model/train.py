"""Trains the demo BLIP (ITC + ITM with hard negatives + prompted LM) on a folder written by
`capfilt demo-data export` and exports the two Hugging Face folders.

usage: /usr/bin/python3 tools/demo-model/train.py --data DIR --val DIR --out models/demo
           [--minutes 42] [--threads 1] [--seed 0] [--log train.log] [--init models/demo]
           [--vision-pretrain-minutes 10]
The learning-rate schedule follows wall time: warm-up, then cosine decay that ends when the time
budget does, whatever the machine's speed.
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

from blip import BlipForConditionalGeneration, BlipForImageTextRetrieval, hf_state_dict, load_hf_weights, write_safetensors
from data import IMAGE_MEAN, IMAGE_STD, load_images, load_rows, pad, pixel_values
from evaluate import PROMPT, evaluate
from tokenizer import SPECIALS, WordPiece, build_vocab, write_tokenizer_files
from vision_pretrain import KINDS, pretrain_vision, sincos_position_embedding

MAX_TEXT = 64


def make_config(vocab_size, architecture, image_size=64, vh=96, vl=3, th=96, tl=2, patch=8):
    ids = {t: SPECIALS.index(t) for t in SPECIALS}
    return {
        "architectures": [architecture],
        "model_type": "blip",
        "projection_dim": 64,
        "image_text_hidden_size": 64,
        "logit_scale_init_value": 2.6592,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
        "transformers_version": "4.37.0",
        "text_config": {
            "model_type": "blip_text_model", "vocab_size": vocab_size, "hidden_size": th,
            "encoder_hidden_size": vh, "intermediate_size": 4 * th, "projection_dim": 64,
            "num_hidden_layers": tl, "num_attention_heads": 4, "max_position_embeddings": MAX_TEXT,
            "hidden_act": "gelu", "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02,
            "bos_token_id": ids["[DEC]"], "eos_token_id": ids["[SEP]"], "pad_token_id": ids["[PAD]"],
            "sep_token_id": ids["[SEP]"], "is_decoder": True, "use_cache": True,
            "cls_token_id": ids["[CLS]"], "enc_token_id": ids["[ENC]"],
        },
        "vision_config": {
            "model_type": "blip_vision_model", "hidden_size": vh, "intermediate_size": 4 * vh,
            "projection_dim": 64, "num_hidden_layers": vl, "num_attention_heads": 4,
            "image_size": image_size, "patch_size": patch, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
            "attention_dropout": 0.0, "initializer_range": 0.02,
        },
    }


def init_weights(module):
    for m in module.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
            torch.nn.init.trunc_normal_(m.weight, std=0.02)
        if isinstance(m, torch.nn.Linear) and m.bias is not None:
            torch.nn.init.zeros_(m.bias)


# The filter learned to reject changed kinds and colours sooner than reversed relations.
RELATION_INVERSES = [(" above ", " below "), (" below ", " above "),
                     (" to the left of ", " to the right of "), (" to the right of ", " to the left of ")]


def with_period(text, rng):
    return text + "." if rng.random() < 0.3 else text


class Batcher:
    def __init__(self, rows, tok, rng):
        self.rows, self.tok, self.rng = rows, tok, rng
        self.junk = [r["web_text"] for r in rows if r["label"] == "junk"]
        self.cache = {}
        self.kind_of_id = {tok.ids[k]: k for k in KINDS if k in tok.ids}

    def enc(self, text):
        ids = self.cache.get(text)
        if ids is None:
            ids = self.tok.encode(text, MAX_TEXT)
            if len(self.cache) < 500_000:
                self.cache[text] = ids
        return ids

    def positive(self, i):
        return with_period(self.rng.choice(self.rows[i]["paraphrases"]), self.rng)

    def negatives(self, i):
        """Swapped captions, and the row's own web text when it is labelled as not matching."""
        r = self.rows[i]
        pool = list(r["swapped"])
        if r["label"] in ("swapped", "mismatched"):
            pool.append(r["web_text"])
        return with_period(self.rng.choice(pool), self.rng)

    def relation_reversed(self, i):
        """A paraphrase of a two-shape row with its relation reversed, or None for other rows."""
        shapes = self.rows[i]["scene"]["shapes"]
        if len(shapes) != 2 or (shapes[0]["kind"], shapes[0]["colour"]) == (shapes[1]["kind"], shapes[1]["colour"]):
            return None  # two alike shapes: the reversed caption is still true
        text = self.rng.choice(self.rows[i]["paraphrases"])
        for a, b in RELATION_INVERSES:
            if a in text:
                return with_period(text.replace(a, b), self.rng)
        return None

    def grounding(self, i, ids):
        """(token position, cx, cy) for each shape-kind token of an encoded text of row i whose
        colour and kind name exactly one shape of the scene (the word before a kind is its colour)."""
        shapes = self.rows[i]["scene"]["shapes"]
        out = []
        for pos in range(1, len(ids)):
            kind = self.kind_of_id.get(ids[pos])
            if kind is None:
                continue
            colour = self.tok.vocab[ids[pos - 1]]
            match = [s for s in shapes if s["kind"] == kind and s["colour"] == colour]
            if len(match) == 1:
                out.append((pos, match[0]["cx"], match[0]["cy"]))
        return out

    def lm(self, i):
        ids = self.enc(PROMPT + self.rng.choice(self.rows[i]["captions"]))
        ids = [self.tok.id["[DEC]"]] + ids[1:]
        return ids


def train(args):
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    torch.set_num_threads(args.threads)
    log = open(args.log, "a")

    def emit(obj):
        obj["t"] = round(time.time() - t0, 1)
        line = json.dumps(obj)
        log.write(line + "\n")
        log.flush()
        print(line, flush=True)

    t0 = time.time()
    rows = load_rows(args.data)
    images = load_images(args.data, rows, args.image_size)
    val_rows = load_rows(args.val)
    val_images = load_images(args.val, val_rows, args.image_size)
    # The grammar's words all occur within a few thousand rows; junk words need the web texts.
    texts = [t for r in rows[:3000] for t in r["paraphrases"] + r["swapped"]] + [r["web_text"] for r in rows] + [PROMPT]
    vocab = build_vocab(texts)
    tok = WordPiece(vocab)
    emit({"event": "data", "rows": len(rows), "vocab": len(vocab), "val_rows": len(val_rows)})

    dims = dict(image_size=args.image_size, patch=args.patch_size, vh=args.vision_hidden, vl=args.vision_layers, th=args.text_hidden, tl=args.text_layers)
    cap_cfg = make_config(len(vocab), "BlipForConditionalGeneration", **dims)
    flt_cfg = make_config(len(vocab), "BlipForImageTextRetrieval", **dims)
    cap = BlipForConditionalGeneration(cap_cfg)
    flt = BlipForImageTextRetrieval(flt_cfg)
    init_weights(cap)
    init_weights(flt)
    # --role both: one vision encoder, trained by all three losses and exported into both folders.
    # --role captioner / filter: each model its own encoder, trained by its own losses (BLIP
    # fine-tunes its captioner and its filter separately, too); two such runs share the two cores.
    trained = {"both": [cap, flt], "captioner": [cap], "filter": [flt]}[args.role]
    if args.init:
        # Continue from exported folders (same data, hence the same vocabulary).
        for model, name in ((cap, "captioner"), (flt, "filter")):
            if model in trained:
                load_hf_weights(model, os.path.join(args.init, name, "model.safetensors"))
        emit({"event": "init", "from": args.init})
    else:
        for model in trained:
            with torch.no_grad():
                model.vision_model.embeddings.position_embedding.copy_(
                    sincos_position_embedding(args.image_size // args.patch_size, args.vision_hidden))
    if args.role == "both":
        flt.vision_model = cap.vision_model
    vision = trained[0].vision_model
    if args.vision_pretrain_minutes > 0:
        # BLIP starts from a label-supervised ViT; ours gets scene-attribute labels (see vision_pretrain.py).
        steps = pretrain_vision(vision, args.vision_hidden, args.image_size // args.patch_size, rows, images,
                                args.vision_pretrain_minutes, args.vision_pretrain_lr, args.vision_pretrain_batch, rng, emit,
                                val=(val_rows, val_images))
        emit({"event": "vision_pretrained", "steps": steps, "minutes": args.vision_pretrain_minutes})
    temp = torch.nn.Parameter(torch.tensor(0.07))
    # Auxiliary, discarded at export: where is the shape this kind word names (see filter_losses).
    grounding = torch.nn.Linear(args.text_hidden, 2)
    params = list({id(p): p for m in trained for p in m.parameters()}.values())
    if args.role != "captioner":
        params += [temp] + (list(grounding.parameters()) if args.grounding_weight > 0 else [])
    n_params = sum(p.numel() for p in params)
    emit({"event": "model", "params": n_params})
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    batcher = Batcher(rows, tok, rng)
    itm_weight = torch.tensor([1.0, args.itm_positive_weight])
    B = args.batch
    # The schedule follows wall time, not a step count, so a busier machine shortens training
    # instead of overrunning the budget: warm-up, then cosine decay to 5% at the end of the budget.
    budget = args.minutes * 60 - (time.time() - t0) - 90
    if budget <= 0:
        # A non-positive budget would make `progress` negative and the loop below never end.
        raise SystemExit(f"--minutes {args.minutes}: nothing left for training after loading, pre-training "
                         f"and the 90 s kept for the final evaluation ({budget:.0f} s)")
    train_start = time.time()
    warmup = args.warmup
    step = 0
    last_eval = time.time()
    while True:
        progress = (time.time() - train_start) / budget
        if progress >= 1.0:
            break
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.5 * (1 + math.cos(math.pi * progress)) * 0.95 + 0.05)
        for g in opt.param_groups:
            g["lr"] = lr
        cap.train(), flt.train()
        idx = rng.sample(range(len(rows)), B)
        emb = vision(pixel_values(images[idx]))
        loss_itc = loss_itm = loss_lm = loss_ground = torch.zeros(())
        if args.role != "captioner":
            loss_itc, loss_itm, loss_ground = filter_losses(args, flt, temp, grounding, emb, idx, rows, batcher, rng, itm_weight)
        if args.role != "filter":
            lm_ids, lm_mask = pad([batcher.lm(i) for i in idx])
            lm_logits = cap.text_decoder(lm_ids, lm_mask, emb)
            labels_lm = lm_ids.masked_fill(lm_mask == 0, -100)
            labels_lm[:, : len(tok.encode(PROMPT)) - 1] = -100
            loss_lm = F.cross_entropy(lm_logits[:, :-1].reshape(-1, lm_logits.shape[-1]), labels_lm[:, 1:].reshape(-1), ignore_index=-100)

        loss = loss_itc + loss_itm + args.lm_weight * loss_lm + args.grounding_weight * loss_ground
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % args.log_every == 0:
            emit({"event": "step", "step": step, "lr": round(lr, 6), "itc": round(loss_itc.item(), 4),
                  "itm": round(loss_itm.item(), 4), "lm": round(loss_lm.item(), 4),
                  "ground": round(loss_ground.item(), 4), "temp": round(temp.item(), 4)})
        if time.time() - last_eval > args.eval_every * 60:
            emit({"event": "eval", "step": step, **evaluate(cap, flt, tok, val_rows, val_images, n_caption=100, n_nucleus=40, role=args.role)})
            last_eval = time.time()
            save(args, trained, cap, flt, cap_cfg, flt_cfg, vocab)

    final = evaluate(cap, flt, tok, val_rows, val_images, role=args.role)
    emit({"event": "final", "step": step, "train_seconds": round(time.time() - train_start, 1),
          "loss_itc": round(loss_itc.item(), 4), "loss_itm": round(loss_itm.item(), 4), "loss_lm": round(loss_lm.item(), 4),
          "batch": B, "params": n_params, **final})
    save(args, trained, cap, flt, cap_cfg, flt_cfg, vocab)
    emit({"event": "exported", "out": args.out})


def filter_losses(args, flt, temp, grounding, emb, idx, rows, batcher, rng, itm_weight):
    """ITC over the batch, then ITM on the matching texts and on negatives: a hard negative text
    and a hard negative image sampled from the ITC similarities (as BLIP does), `swapped`
    captions, junk web texts, and with --relation-negatives each two-shape image's caption with
    its relation reversed, paired with one more positive so that the relation decides.

    With --grounding-weight, an auxiliary loss: after the first text layer (with cross-attention)
    each kind word of the matching text must tell where its shape is (centre x, y; MSE x10).
    Fine-tuning the previous filter on reversed-relation negatives without it left reversed
    relations ("above" for "below") 2% rejected (4% with two more text layers), with it 39% in the
    same 8 minutes: to compare two shapes' positions the words must first fetch them from the
    image, and the ITM loss alone did not teach that."""
    B = len(idx)
    pos_texts = [batcher.positive(i) for i in idx]
    pos_ids, pos_mask = pad([batcher.enc(t) for t in pos_texts])
    same = torch.tensor([[rows[a]["caption"] == rows[b]["caption"] for b in idx] for a in idx], dtype=torch.float)
    i_feat = flt.image_feat(emb)
    t_feat = flt.text_feat(pos_ids, pos_mask)
    sim_i2t = i_feat @ t_feat.T / temp.clamp(0.01, 0.5)
    target = same / same.sum(1, keepdim=True)
    loss_itc = (-(F.log_softmax(sim_i2t, 1) * target).sum(1).mean() - (F.log_softmax(sim_i2t.T, 1) * target).sum(1).mean()) / 2

    with torch.no_grad():
        w_i2t = F.softmax(sim_i2t, 1).masked_fill(same > 0, 0) + 1e-6 * (1 - same)
        w_t2i = F.softmax(sim_i2t.T, 1).masked_fill(same > 0, 0) + 1e-6 * (1 - same)
        neg_text = torch.multinomial(w_i2t, 1)[:, 0].tolist()
        neg_img = torch.multinomial(w_t2i, 1)[:, 0].tolist()
    n_junk = B // 4
    S = args.swapped_negatives
    itm_texts = (pos_texts + [pos_texts[j] for j in neg_text] + pos_texts
                 + [batcher.negatives(i) for _ in range(S) for i in idx]
                 + [rng.choice(batcher.junk) for _ in range(n_junk)])
    img_index = list(range(B)) + list(range(B)) + neg_img + list(range(B)) * S + list(range(n_junk))
    labels = [1] * B + [0] * ((2 + S) * B + n_junk)
    if args.relation_negatives:
        for i_local, i in enumerate(idx):
            reversed_text = batcher.relation_reversed(i)
            if reversed_text is not None:
                itm_texts += [reversed_text, batcher.positive(i)]
                img_index += [i_local, i_local]
                labels += [0, 1]
    ids, mask = pad([batcher.enc(x) for x in itm_texts])
    logits = flt.itm_logits(emb, ids, mask, image_index=torch.tensor(img_index))
    loss_itm = F.cross_entropy(logits, torch.tensor(labels), weight=itm_weight)

    loss_ground = torch.zeros(())
    if args.grounding_weight > 0:
        where = [(k, pos, cx, cy) for k, i in enumerate(idx) for pos, cx, cy in batcher.grounding(i, pos_ids[k].tolist())]
        if where:
            te = flt.text_encoder
            additive = (1.0 - pos_mask[:, None, None, :].float()) * -10000.0
            hidden = te.encoder.layer[0](te.embeddings(pos_ids), additive, emb)
            rows_k, cols = torch.tensor([w[0] for w in where]), torch.tensor([w[1] for w in where])
            loss_ground = F.mse_loss(grounding(hidden[rows_k, cols]), torch.tensor([[w[2], w[3]] for w in where])) * 10
    return loss_itc, loss_itm, loss_ground


def save(args, trained, cap, flt, cap_cfg, flt_cfg, vocab):
    preprocessor = {
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": IMAGE_MEAN, "image_std": IMAGE_STD, "image_processor_type": "BlipImageProcessor",
        "processor_class": "BlipProcessor", "resample": 3, "rescale_factor": 1 / 255,
        "size": {"height": args.image_size, "width": args.image_size}, "image_size": args.image_size,
    }
    for name, model, cfg in (("captioner", cap, cap_cfg), ("filter", flt, flt_cfg)):
        if model not in trained:
            continue
        out = os.path.join(args.out, name)
        os.makedirs(out, exist_ok=True)
        write_safetensors(os.path.join(out, "model.safetensors"), hf_state_dict(model))
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
            json.dump(preprocessor, f, indent=2)
        write_tokenizer_files(out, vocab, MAX_TEXT)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=42)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--eval-every", type=float, default=10)
    p.add_argument("--log", default="train.log")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--init", help="folder with captioner/ and filter/ to continue training from")
    p.add_argument("--role", choices=["both", "captioner", "filter"], default="both",
                   help="train both models on one vision encoder, or one of them alone (LM; ITC + ITM) and export only its folder")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--lm-weight", type=float, default=1.0)
    p.add_argument("--patch-size", type=int, default=8)
    p.add_argument("--vision-hidden", type=int, default=96)
    p.add_argument("--vision-layers", type=int, default=3)
    p.add_argument("--text-hidden", type=int, default=96)
    p.add_argument("--text-layers", type=int, default=2)
    p.add_argument("--itm-positive-weight", type=float, default=1.5,
                   help="ITM loss weight of matching pairs against 1 for non-matching ones")
    p.add_argument("--swapped-negatives", type=int, default=1,
                   help="one-attribute-swapped captions per image in each ITM batch (hard negatives)")
    p.add_argument("--relation-negatives", action="store_true",
                   help="also give each two-shape image its caption with the relation reversed as an ITM negative")
    p.add_argument("--grounding-weight", type=float, default=0,
                   help="weight of the auxiliary loss that makes kind words locate their shape after the first text layer (filter)")
    p.add_argument("--vision-pretrain-minutes", type=float, default=0,
                   help="minutes of scene-attribute pre-training of the ViT before BLIP training (part of --minutes)")
    p.add_argument("--vision-pretrain-lr", type=float, default=1e-3)
    p.add_argument("--vision-pretrain-batch", type=int, default=32)
    train(p.parse_args())


if __name__ == "__main__":
    main()
