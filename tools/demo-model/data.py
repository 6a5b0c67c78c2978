"""Reads a folder written by `capfilt demo-data export` and preprocesses its images exactly as
BlipImageProcessor does (PIL bicubic resize to image_size, rescale 1/255, normalise)."""
import json
import os

import numpy as np
import torch
from PIL import Image

IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]


def load_rows(folder):
    with open(os.path.join(folder, "pairs.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def load_images(folder, rows, image_size):
    """uint8 [N, S, S, 3] after the processor's resize; cached next to the data."""
    cache = os.path.join(folder, f"resized_{image_size}.npy")
    if os.path.exists(cache):
        arr = np.load(cache)
        if arr.shape[0] == len(rows):
            return arr
    arr = np.empty((len(rows), image_size, image_size, 3), dtype=np.uint8)
    for i, r in enumerate(rows):
        with Image.open(os.path.join(folder, r["file"])) as im:
            arr[i] = np.asarray(im.convert("RGB").resize((image_size, image_size), resample=Image.BICUBIC))
    np.save(cache, arr)
    return arr


_MEAN = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)


def pixel_values(uint8_batch):
    x = torch.from_numpy(np.ascontiguousarray(uint8_batch)).permute(0, 3, 1, 2).float() * (1.0 / 255.0)
    return (x - _MEAN) / _STD


def pad(seqs, pad_id=0):
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask
