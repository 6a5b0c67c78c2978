"""Quality figures of the demo model measured in PyTorch (the TypeScript runtime's
tools/eval-demo.ts is the authoritative measurement; this one steers training)."""
import re

import numpy as np
import torch

from data import pad, pixel_values

PROMPT = "a picture of "


def norm(text):
    text = re.sub(r"[.,!?;:]", " ", text.lower())
    text = re.sub(r"\s+", " ", text).strip()
    return text[len(PROMPT):] if text.startswith(PROMPT) else text


def prompt_prefix(tok):
    ids = tok.encode(PROMPT)[:-1]
    ids[0] = tok.id["[DEC]"]
    return ids


@torch.no_grad()
def generate(cap, image_embeds, tok, max_length=30, top_p=None, gen=None):
    """Greedy (top_p None) or nucleus sampling, HF semantics: stop on [SEP], pad finished rows."""
    sep, padid = tok.id["[SEP]"], tok.id["[PAD]"]
    prefix = prompt_prefix(tok)
    ids = torch.tensor([prefix] * image_embeds.shape[0], dtype=torch.long)
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    while ids.shape[1] < max_length and not bool(done.all()):
        logits = cap.text_decoder(ids, torch.ones_like(ids), image_embeds)[:, -1]
        if top_p is None:
            nxt = logits.argmax(-1)
        else:
            probs = logits.softmax(-1)
            sp, si = probs.sort(-1, descending=True)
            keep = (sp.cumsum(-1) - sp) < top_p
            sp = sp * keep
            pick = torch.multinomial(sp / sp.sum(-1, keepdim=True), 1, generator=gen)[:, 0]
            nxt = si.gather(1, pick[:, None])[:, 0]
        nxt = torch.where(done, torch.full_like(nxt, padid), nxt)
        ids = torch.cat([ids, nxt[:, None]], 1)
        done |= nxt == sep
    return [tok.decode(r[len(prefix):].tolist()) for r in ids]


@torch.no_grad()
def evaluate(cap, flt, tok, rows, images, n_caption=200, n_nucleus=100, max_text=64, role="both"):
    """Captioner figures unless role is "filter", filter figures unless it is "captioner"."""
    cap.eval(), flt.eval()
    out = {}
    truth = [set(norm(p) for p in r["paraphrases"]) for r in rows]
    if role != "filter":
        out.update(caption_figures(cap, tok, rows, images, truth, n_caption, n_nucleus))
    if role != "captioner":
        out.update(filter_figures(flt, tok, rows, images, truth, max_text))
    return out


def caption_figures(cap, tok, rows, images, truth, n_caption, n_nucleus):
    out = {}
    pv = pixel_values(images[:n_caption])
    emb = cap.vision_model(pv)
    greedy = generate(cap, emb, tok)
    out["caption_exact"] = float(np.mean([norm(c) in truth[i] for i, c in enumerate(greedy)]))
    out["greedy_examples"] = greedy[:3]
    g = torch.Generator().manual_seed(0)
    emb_n = emb[:n_nucleus].repeat_interleave(5, 0)
    samples = generate(cap, emb_n, tok, top_p=0.9, gen=g)
    ok = [norm(c) in truth[i // 5] for i, c in enumerate(samples)]
    out["caption_exact_nucleus"] = float(np.mean(ok))
    out["nucleus_diverse"] = float(np.mean([len(set(samples[i * 5:(i + 1) * 5])) > 1 for i in range(n_nucleus)]))
    return out


def filter_figures(flt, tok, rows, images, truth, max_text):
    out = {}
    femb = flt.vision_model(pixel_values(images))
    ids, mask = pad([tok.encode(r["web_text"], max_text) for r in rows])
    probs = flt.itm_logits(femb, ids, mask).softmax(-1)[:, 1].numpy()
    for label in ["correct", "mismatched", "swapped", "junk"]:
        sel = np.array([r["label"] == label for r in rows])
        if sel.any():
            key = "itm_kept_correct" if label == "correct" else f"itm_rejected_{label}"
            val = (probs[sel] >= 0.5).mean() if label == "correct" else (probs[sel] < 0.5).mean()
            out[key] = float(val)
    m = min(100, len(rows))
    i_feat = flt.image_feat(femb[:m])
    cids, cmask = pad([tok.encode(r["caption"], max_text) for r in rows[:m]])
    t_feat = flt.text_feat(cids, cmask)
    best = (i_feat @ t_feat.T).argmax(-1).tolist()
    out["itc_top1_100"] = float(np.mean([norm(rows[b]["caption"]) in truth[i] for i, b in enumerate(best)]))
    return out
