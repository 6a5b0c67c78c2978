"""BLIP modules with the Hugging Face transformers module tree and state-dict names.

Only what BlipForConditionalGeneration and BlipForImageTextRetrieval need at inference and for
training: the vision transformer, the BERT-style text model with cross-attention, the LM head, the
ITM head and the ITC projections. Submodule attribute names spell the HF state-dict names exactly,
so `state_dict()` of these modules is what an HF checkpoint stores (minus aliases and buffers).
"""
import json
import math
import struct

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


# ---------------------------------------------------------------- vision (BlipVisionModel)

class BlipVisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, p, s = c["hidden_size"], c["patch_size"], c["image_size"]
        self.class_embedding = nn.Parameter(torch.randn(1, 1, h) * 0.02)
        self.patch_embedding = nn.Conv2d(3, h, kernel_size=p, stride=p)
        self.position_embedding = nn.Parameter(torch.randn(1, (s // p) ** 2 + 1, h) * 0.02)

    def forward(self, pixel_values):
        x = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        return x + self.position_embedding[:, : x.shape[1]]


class BlipAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.qkv = nn.Linear(self.h, 3 * self.h)
        self.projection = nn.Linear(self.h, self.h)

    def forward(self, x):
        b, n, _ = x.shape
        d = self.h // self.heads
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q @ k.transpose(-1, -2)) * d ** -0.5
        ctx = att.softmax(-1) @ v
        return self.projection(ctx.permute(0, 2, 1, 3).reshape(b, n, self.h))


class BlipMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Linear(c["hidden_size"], c["intermediate_size"])
        self.fc2 = nn.Linear(c["intermediate_size"], c["hidden_size"])

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class BlipEncoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = c.get("layer_norm_eps", 1e-5)
        self.self_attn = BlipAttention(c)
        self.layer_norm1 = nn.LayerNorm(c["hidden_size"], eps=eps)
        self.mlp = BlipMLP(c)
        self.layer_norm2 = nn.LayerNorm(c["hidden_size"], eps=eps)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class BlipEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList([BlipEncoderLayer(c) for _ in range(c["num_hidden_layers"])])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class BlipVisionModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = BlipVisionEmbeddings(c)
        self.encoder = BlipEncoder(c)
        self.post_layernorm = nn.LayerNorm(c["hidden_size"], eps=c.get("layer_norm_eps", 1e-5))

    def forward(self, pixel_values):
        """last_hidden_state [B, N+1, H]."""
        return self.post_layernorm(self.encoder(self.embeddings(pixel_values)))


# ---------------------------------------------------------------- text (BlipTextModel)

class BlipTextEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c["vocab_size"], c["hidden_size"], padding_idx=c.get("pad_token_id", 0))
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c.get("layer_norm_eps", 1e-12))

    def forward(self, input_ids, past_length=0):
        pos = torch.arange(past_length, past_length + input_ids.shape[1], device=input_ids.device)
        return self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(pos)[None])


class BlipTextSelfAttention(nn.Module):
    def __init__(self, c, is_cross):
        super().__init__()
        h = c["hidden_size"]
        kv_in = c["encoder_hidden_size"] if is_cross else h
        self.heads = c["num_attention_heads"]
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(kv_in, h)
        self.value = nn.Linear(kv_in, h)

    def split(self, x):
        b, n, h = x.shape
        return x.view(b, n, self.heads, h // self.heads).transpose(1, 2)

    def forward(self, x, kv_source, additive_mask=None, kv_index=None):
        # kv_index (training only): rows of kv_source each query row attends to, so that the
        # cross-attention keys/values of an image paired with several texts are computed once.
        k, v = self.split(self.key(kv_source)), self.split(self.value(kv_source))
        if kv_index is not None:
            k, v = k[kv_index], v[kv_index]
        q = self.split(self.query(x))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        if additive_mask is not None:
            att = att + additive_mask
        ctx = att.softmax(-1) @ v
        b, _, n, d = ctx.shape
        return ctx.transpose(1, 2).reshape(b, n, self.heads * d)


class BlipTextSelfOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c.get("layer_norm_eps", 1e-12))

    def forward(self, ctx, residual):
        return self.LayerNorm(self.dense(ctx) + residual)


class BlipTextAttention(nn.Module):
    def __init__(self, c, is_cross=False):
        super().__init__()
        self.self = BlipTextSelfAttention(c, is_cross)
        self.output = BlipTextSelfOutput(c)

    def forward(self, x, kv_source, additive_mask=None, kv_index=None):
        return self.output(self.self(x, kv_source, additive_mask, kv_index), x)


class BlipTextIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])

    def forward(self, x):
        return F.gelu(self.dense(x))


class BlipTextOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["intermediate_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c.get("layer_norm_eps", 1e-12))

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class BlipTextLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = BlipTextAttention(c)
        self.crossattention = BlipTextAttention(c, is_cross=True)
        self.intermediate = BlipTextIntermediate(c)
        self.output = BlipTextOutput(c)

    def forward(self, x, self_mask, image_embeds, image_index=None):
        x = self.attention(x, x, self_mask)
        if image_embeds is not None:
            x = self.crossattention(x, image_embeds, None, image_index)
        return self.output(self.intermediate(x), x)


class BlipTextEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([BlipTextLayer(c) for _ in range(c["num_hidden_layers"])])

    def forward(self, x, self_mask, image_embeds, image_index=None):
        for layer in self.layer:
            x = layer(x, self_mask, image_embeds, image_index)
        return x


class BlipTextModel(nn.Module):
    """BERT with cross-attention, no pooler (add_pooling_layer=False in both BLIP heads)."""

    def __init__(self, c):
        super().__init__()
        self.embeddings = BlipTextEmbeddings(c)
        self.encoder = BlipTextEncoder(c)

    def forward(self, input_ids, attention_mask, image_embeds=None, causal=False, image_index=None):
        n = input_ids.shape[1]
        mask = attention_mask[:, None, None, :].float()
        if causal:
            mask = mask * torch.tril(torch.ones(n, n, device=input_ids.device))[None, None]
        additive = (1.0 - mask) * -10000.0
        return self.encoder(self.embeddings(input_ids), additive, image_embeds, image_index)


class BlipTextPredictionHeadTransform(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c.get("layer_norm_eps", 1e-12))

    def forward(self, x):
        return self.LayerNorm(F.gelu(self.dense(x)))


class BlipTextLMPredictionHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transform = BlipTextPredictionHeadTransform(c)
        self.decoder = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        self.bias = nn.Parameter(torch.zeros(c["vocab_size"]))

    def forward(self, x):
        return self.decoder(self.transform(x)) + self.bias


class BlipTextOnlyMLMHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.predictions = BlipTextLMPredictionHead(c)

    def forward(self, x):
        return self.predictions(x)


class BlipTextLMHeadModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bert = BlipTextModel(c)
        self.cls = BlipTextOnlyMLMHead(c)

    def forward(self, input_ids, attention_mask, image_embeds):
        return self.cls(self.bert(input_ids, attention_mask, image_embeds, causal=True))


# ---------------------------------------------------------------- the two HF heads

class BlipForConditionalGeneration(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.vision_model = BlipVisionModel(config["vision_config"])
        self.text_decoder = BlipTextLMHeadModel(config["text_config"])

    @torch.no_grad()
    def generate_greedy(self, image_embeds, prefix, max_length, sep_id, pad_id):
        """HF greedy generate: stops on sep, pads finished rows, full-sequence recompute."""
        ids = prefix.clone()
        done = torch.zeros(ids.shape[0], dtype=torch.bool)
        while ids.shape[1] < max_length and not bool(done.all()):
            logits = self.text_decoder(ids, torch.ones_like(ids), image_embeds)[:, -1]
            nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            done = done | (nxt == sep_id)
        return ids


class BlipForImageTextRetrieval(nn.Module):
    def __init__(self, config):
        super().__init__()
        tc, vc = config["text_config"], config["vision_config"]
        d = config["image_text_hidden_size"]
        self.vision_model = BlipVisionModel(vc)
        self.text_encoder = BlipTextModel(tc)
        self.vision_proj = nn.Linear(vc["hidden_size"], d)
        self.text_proj = nn.Linear(tc["hidden_size"], d)
        self.itm_head = nn.Linear(tc["hidden_size"], 2)

    def itm_logits(self, image_embeds, input_ids, attention_mask, image_index=None):
        return self.itm_head(self.text_encoder(input_ids, attention_mask, image_embeds, image_index=image_index)[:, 0])

    def image_feat(self, image_embeds):
        return F.normalize(self.vision_proj(image_embeds[:, 0]), dim=-1)

    def text_feat(self, input_ids, attention_mask):
        return F.normalize(self.text_proj(self.text_encoder(input_ids, attention_mask)[:, 0]), dim=-1)


# ---------------------------------------------------------------- safetensors (no package)

_DTYPES = {"F32": (np.float32, torch.float32), "F16": (np.float16, torch.float16)}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype=np.dtype(_DTYPES[info["dtype"]][0]).newbyteorder("<"))
        out[name] = torch.from_numpy(arr.astype(np.float32).reshape(info["shape"]))
    return out


def write_safetensors(path, tensors, dtype="F32"):
    """Tensors in sorted-name order, header padded with spaces to a multiple of 8."""
    np_dtype = np.dtype(_DTYPES[dtype][0]).newbyteorder("<")
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().cpu().numpy().astype(np_dtype).tobytes()
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def load_hf_weights(model, path):
    """Strict load: the stored names must be exactly the module's (decoder.bias is HF's alias)."""
    sd = read_safetensors(path)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: missing {missing}, unexpected {unexpected}")


def hf_state_dict(model):
    return {k: v for k, v in model.state_dict().items()}
