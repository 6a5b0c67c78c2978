"""Supervised pre-training of the demo ViT on scene attributes, before BLIP pre-training.

BLIP does not train its image encoder from scratch: it starts from a ViT pre-trained with labels
(ImageNet). A from-scratch ViT of this size, trained only through ITC/ITM/LM, learned backgrounds
and colours but not shape kinds within the time budget (kinds stayed at chance), so the demo
recipe does the same as BLIP: label-supervised ViT first. The labels come from the generator's
scene description in `pairs.jsonl`:
- per patch token: the kind (5 + none) and the colour (8) of the shape whose bounding square holds
  the patch centre, or none and the background colour (a band just outside the square is left
  unlabelled, since rotated shapes reach into it);
- on the class token: background colour, shape count, and which (kind, colour) pairs are present.
The heads are thrown away afterwards; only `vision_model` weights continue into BLIP training.
"""
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from data import pixel_values

KINDS = ["circle", "square", "triangle", "star", "diamond"]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
IGNORE = -100
# A patch centre within CORE·size of a shape's centre (max-norm: the bounding square) belongs to the
# shape; farther than EDGE·size it does not; in between it is not labelled.
CORE, EDGE = 0.50, 0.62


def sincos_position_embedding(grid, hidden):
    """[1, 1 + grid², hidden]: 2D sine-cosine positions (MAE), zero for the class token.

    A from-scratch ViT first has to learn from its random position embeddings which patches are
    neighbours; starting from 2D sine-cosine ones gives it that from the first step."""
    quarter = hidden // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    ys, xs = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")
    parts = []
    for coord in (xs.reshape(-1), ys.reshape(-1)):
        angles = coord[:, None] * omega[None, :]
        parts += [np.sin(angles), np.cos(angles)]
    table = np.concatenate(parts, axis=1)
    table = np.pad(table, ((1, 0), (0, hidden - table.shape[1])))
    return torch.tensor(table, dtype=torch.float32)[None]


def scene_targets(rows, grid):
    """Per row: kind [G*G], colour [G*G], background, count-1, pairs multi-hot [40]."""
    n = len(rows)
    kind = np.full((n, grid * grid), IGNORE, dtype=np.int64)
    colour = np.full((n, grid * grid), IGNORE, dtype=np.int64)
    background = np.zeros(n, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    pairs = np.zeros((n, len(KINDS) * len(COLOURS)), dtype=np.float32)
    centre = np.zeros((n, 3), dtype=np.int64)  # patch holding each shape's centre (for the accuracy figure)
    centre_kind = np.full((n, 3), IGNORE, dtype=np.int64)
    centres = (np.arange(grid) + 0.5) / grid
    px, py = np.meshgrid(centres, centres)  # row-major patches, y down as in the SVG
    px, py = px.reshape(-1), py.reshape(-1)
    for i, r in enumerate(rows):
        scene = r["scene"]
        bg = COLOURS.index(scene["background"])
        background[i] = bg
        count[i] = len(scene["shapes"]) - 1
        kind[i] = len(KINDS)  # "none" unless a shape covers the patch
        colour[i] = bg
        for j, s in enumerate(scene["shapes"]):
            k, c = KINDS.index(s["kind"]), COLOURS.index(s["colour"])
            centre[i, j] = min(grid - 1, int(s["cy"] * grid)) * grid + min(grid - 1, int(s["cx"] * grid))
            centre_kind[i, j] = k
            pairs[i, k * len(COLOURS) + c] = 1
            d = np.maximum(np.abs(px - s["cx"]), np.abs(py - s["cy"])) / s["size"]
            inside, edge = d < CORE, (d >= CORE) & (d < EDGE)
            kind[i, inside], colour[i, inside] = k, c
            kind[i, edge], colour[i, edge] = IGNORE, IGNORE
    return {k: torch.from_numpy(v) for k, v in
            dict(kind=kind, colour=colour, background=background, count=count, pairs=pairs,
                 centre=centre, centre_kind=centre_kind).items()}


class AttributeHeads(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.kind = torch.nn.Linear(hidden, len(KINDS) + 1)
        self.colour = torch.nn.Linear(hidden, len(COLOURS))
        self.background = torch.nn.Linear(hidden, len(COLOURS))
        self.count = torch.nn.Linear(hidden, 3)
        self.pairs = torch.nn.Linear(hidden, len(KINDS) * len(COLOURS))

    def losses(self, emb, t):
        cls, patches = emb[:, 0], emb[:, 1:]
        # Most patches are background: "none" weighs less so that the shape patches drive the loss.
        weight = torch.ones(len(KINDS) + 1)
        weight[len(KINDS)] = 0.25
        kind_logits, pairs_logits = self.kind(patches), self.pairs(cls)
        lk = F.cross_entropy(kind_logits.flatten(0, 1), t["kind"].flatten(), weight=weight, ignore_index=IGNORE)
        lc = F.cross_entropy(self.colour(patches).flatten(0, 1), t["colour"].flatten(), ignore_index=IGNORE)
        lb = F.cross_entropy(self.background(cls), t["background"])
        ln = F.cross_entropy(self.count(cls), t["count"])
        lp = F.binary_cross_entropy_with_logits(pairs_logits, t["pairs"])
        with torch.no_grad():
            valid = t["kind"] != IGNORE
            shape = valid & (t["kind"] < len(KINDS))
            pred = kind_logits.argmax(-1)
            kind_acc = ((pred == t["kind"]) & shape).sum() / shape.sum().clamp(min=1)
            at_centre = pred.gather(1, t["centre"])
            has = t["centre_kind"] != IGNORE
            centre_acc = ((at_centre == t["centre_kind"]) & has).sum() / has.sum()
            pairs_exact = ((pairs_logits > 0).float() == t["pairs"]).all(-1).float().mean()
        return lk + lc + lb + ln + 4 * lp, {"kind": lk.item(), "colour": lc.item(), "background": lb.item(),
                                            "count": ln.item(), "pairs": lp.item(), "kind_acc": kind_acc.item(), "centre_kind_acc": centre_acc.item(),
                                            "pairs_exact": pairs_exact.item()}


def pretrain_vision(vision, hidden, grid, rows, images, minutes, lr, batch, rng, emit, val=None):
    """Trains `vision` in place for `minutes` of wall time (warm-up, cosine decay)."""
    targets = scene_targets(rows, grid)
    heads = AttributeHeads(hidden)
    params = list(vision.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    start, budget, step = time.time(), minutes * 60, 0
    vision.train()
    while (progress := (time.time() - start) / budget) < 1.0:
        cur = lr * min(1.0, (step + 1) / 100) * (0.5 * (1 + math.cos(math.pi * progress)) * 0.95 + 0.05)
        for g in opt.param_groups:
            g["lr"] = cur
        idx = rng.sample(range(len(rows)), batch)
        loss, parts = heads.losses(vision(pixel_values(images[idx])), {k: v[idx] for k, v in targets.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            emit({"event": "vision_step", "step": step, "lr": round(cur, 6), **{k: round(v, 4) for k, v in parts.items()}})
    if val is not None:
        val_rows, val_images = val
        vision.eval()
        with torch.no_grad():
            _, parts = heads.losses(vision(pixel_values(val_images)), scene_targets(val_rows, grid))
        emit({"event": "vision_val", "steps": step, **{k: round(v, 4) for k, v in parts.items()}})
    return step
