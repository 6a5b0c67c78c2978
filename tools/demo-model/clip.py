"""CLIP modules with the Hugging Face transformers module tree and state-dict names (CLIPModel).

What modeling_clip.py's CLIPModel computes at inference, written as trainable modules whose
attribute names spell HF's state-dict names, so `state_dict()` is what an HF checkpoint stores:

  text_model.embeddings.{token_embedding, position_embedding}
  text_model.encoder.layers.N.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}
  text_model.final_layer_norm
  vision_model.embeddings.{class_embedding, patch_embedding (Conv2d, no bias), position_embedding}
  vision_model.pre_layrnorm   (sic: HF's spelling)
  vision_model.encoder.layers.N.…   vision_model.post_layernorm
  visual_projection, text_projection (no bias), logit_scale (0-d)

Text: token + position embeddings → pre-LN layers under the causal mask plus the padding mask
(additive, finfo.min, summed as CLIPAttention sums them) → final_layer_norm → pooled at
argmax(input_ids) when text_config.eos_token_id == 2 (HF's legacy rule), else at the first
position holding eos_token_id → text_projection. Vision: patch conv → class token prepended →
+ positions → pre_layrnorm → layers → post_layernorm(last_hidden_state[:, 0]) → visual_projection.
Activation quick_gelu (x·σ(1.702x)) unless the config names another.

check_clip_parity.py loads test/fixtures/parity/clip-t1 into these modules and reproduces its
vectors.json. The safetensors reader/writer is blip.py's.
"""
import math

import torch
from torch import nn
import torch.nn.functional as F

from blip import read_safetensors, write_safetensors  # noqa: F401  (re-exported for the trainers)


def activation(name):
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name == "gelu":
        return F.gelu
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    raise ValueError(f"hidden_act {name} is not supported")


class CLIPAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.k_proj = nn.Linear(self.h, self.h)
        self.v_proj = nn.Linear(self.h, self.h)
        self.q_proj = nn.Linear(self.h, self.h)
        self.out_proj = nn.Linear(self.h, self.h)

    def forward(self, x, mask=None):
        b, n, _ = x.shape
        d = self.h // self.heads
        shape = lambda t: t.view(b, n, self.heads, d).transpose(1, 2)
        q = shape(self.q_proj(x) * d ** -0.5)
        k = shape(self.k_proj(x))
        v = shape(self.v_proj(x))
        w = q @ k.transpose(-1, -2)
        if mask is not None:
            w = w + mask
        ctx = w.softmax(-1) @ v
        return self.out_proj(ctx.transpose(1, 2).reshape(b, n, self.h))


class CLIPMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.act = activation(c.get("hidden_act", "quick_gelu"))
        self.fc1 = nn.Linear(c["hidden_size"], c["intermediate_size"])
        self.fc2 = nn.Linear(c["intermediate_size"], c["hidden_size"])

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = c.get("layer_norm_eps", 1e-5)
        self.self_attn = CLIPAttention(c)
        self.layer_norm1 = nn.LayerNorm(c["hidden_size"], eps=eps)
        self.mlp = CLIPMLP(c)
        self.layer_norm2 = nn.LayerNorm(c["hidden_size"], eps=eps)

    def forward(self, x, mask=None):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(c) for _ in range(c["num_hidden_layers"])])

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return x


# ---------------------------------------------------------------- text (CLIPTextTransformer)

class CLIPTextEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.token_embedding = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.position_embedding = nn.Embedding(c["max_position_embeddings"], c["hidden_size"])

    def forward(self, input_ids):
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.token_embedding(input_ids) + self.position_embedding(pos)[None]


def text_attention_mask(attention_mask, seq_len, dtype=torch.float32):
    """[B or 1, 1, S, S] additive mask: causal (upper triangle) plus padding (masked keys), as
    HF's _create_4d_causal_attention_mask + _prepare_4d_attention_mask, summed."""
    lo = torch.finfo(dtype).min
    causal = torch.full((seq_len, seq_len), lo, dtype=dtype).triu(1)[None, None]
    if attention_mask is None:
        return causal
    pad = (1.0 - attention_mask[:, None, None, :].to(dtype)) * lo
    return causal + pad


class CLIPTextTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.eos_token_id = c.get("eos_token_id", 2)
        self.embeddings = CLIPTextEmbeddings(c)
        self.encoder = CLIPEncoder(c)
        self.final_layer_norm = nn.LayerNorm(c["hidden_size"], eps=c.get("layer_norm_eps", 1e-5))

    def pool_index(self, input_ids):
        ids = input_ids.to(torch.int)
        if self.eos_token_id == 2:
            # Legacy configs: the end-of-text token has the highest id.
            return ids.argmax(dim=-1)
        return (ids == self.eos_token_id).int().argmax(dim=-1)

    def forward(self, input_ids, attention_mask=None):
        """(last_hidden_state [B, S, H] after final_layer_norm, pooler_output [B, H])."""
        x = self.embeddings(input_ids)
        x = self.encoder(x, text_attention_mask(attention_mask, input_ids.shape[1], x.dtype))
        last = self.final_layer_norm(x)
        pooled = last[torch.arange(last.shape[0], device=last.device), self.pool_index(input_ids)]
        return last, pooled


# ---------------------------------------------------------------- vision (CLIPVisionTransformer)

class CLIPVisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, p, s = c["hidden_size"], c["patch_size"], c["image_size"]
        self.class_embedding = nn.Parameter(torch.randn(h) * h ** -0.5)
        self.patch_embedding = nn.Conv2d(c.get("num_channels", 3), h, kernel_size=p, stride=p, bias=False)
        self.position_embedding = nn.Embedding((s // p) ** 2 + 1, h)

    def forward(self, pixel_values):
        x = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        return x + self.position_embedding.weight[: x.shape[1]][None]


class CLIPVisionTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = c.get("layer_norm_eps", 1e-5)
        self.embeddings = CLIPVisionEmbeddings(c)
        self.pre_layrnorm = nn.LayerNorm(c["hidden_size"], eps=eps)
        self.encoder = CLIPEncoder(c)
        self.post_layernorm = nn.LayerNorm(c["hidden_size"], eps=eps)

    def forward(self, pixel_values):
        """(last_hidden_state [B, N+1, H] (encoder output, no post LN), pooler_output [B, H])."""
        last = self.encoder(self.pre_layrnorm(self.embeddings(pixel_values)))
        return last, self.post_layernorm(last[:, 0])


# ---------------------------------------------------------------- CLIPModel

class CLIPModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        tc, vc = config["text_config"], config["vision_config"]
        d = config.get("projection_dim", 512)
        self.text_model = CLIPTextTransformer(tc)
        self.vision_model = CLIPVisionTransformer(vc)
        self.visual_projection = nn.Linear(vc["hidden_size"], d, bias=False)
        self.text_projection = nn.Linear(tc["hidden_size"], d, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.get("logit_scale_init_value", math.log(1 / 0.07)))))

    def image_embeds(self, pixel_values, normalize=True):
        e = self.visual_projection(self.vision_model(pixel_values)[1])
        return F.normalize(e, dim=-1) if normalize else e

    def text_embeds(self, input_ids, attention_mask=None, normalize=True):
        e = self.text_projection(self.text_model(input_ids, attention_mask)[1])
        return F.normalize(e, dim=-1) if normalize else e

    def forward(self, input_ids, pixel_values, attention_mask=None):
        """(logits_per_image [B_img, B_txt], logits_per_text), as CLIPModel.forward returns them."""
        img = self.image_embeds(pixel_values)
        txt = self.text_embeds(input_ids, attention_mask)
        logits_per_text = self.logit_scale.exp() * txt @ img.T
        return logits_per_text.T, logits_per_text


def init_clip_weights(model, factor=1.0):
    """CLIPPreTrainedModel._init_weights (initializer_factor = factor)."""
    for tower in (model.text_model, model.vision_model):
        n = len(tower.encoder.layers)
        for m in tower.modules():
            if isinstance(m, CLIPAttention):
                in_std = m.h ** -0.5 * (2 * n) ** -0.5 * factor
                for p in (m.q_proj, m.k_proj, m.v_proj):
                    nn.init.normal_(p.weight, std=in_std)
                nn.init.normal_(m.out_proj.weight, std=m.h ** -0.5 * factor)
                for p in (m.q_proj, m.k_proj, m.v_proj, m.out_proj):
                    nn.init.zeros_(p.bias)
            elif isinstance(m, CLIPMLP):
                h = m.fc1.weight.shape[1]
                nn.init.normal_(m.fc1.weight, std=(2 * h) ** -0.5 * factor)
                nn.init.normal_(m.fc2.weight, std=h ** -0.5 * (2 * n) ** -0.5 * factor)
                nn.init.zeros_(m.fc1.bias)
                nn.init.zeros_(m.fc2.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    t, v = model.text_model.embeddings, model.vision_model.embeddings
    nn.init.normal_(t.token_embedding.weight, std=0.02 * factor)
    nn.init.normal_(t.position_embedding.weight, std=0.02 * factor)
    nn.init.normal_(v.class_embedding, std=v.class_embedding.shape[0] ** -0.5 * factor)
    nn.init.normal_(v.patch_embedding.weight, std=0.02 * factor)
    nn.init.normal_(v.position_embedding.weight, std=0.02 * factor)
    nn.init.normal_(model.visual_projection.weight, std=model.visual_projection.weight.shape[1] ** -0.5 * factor)
    nn.init.normal_(model.text_projection.weight, std=model.text_projection.weight.shape[1] ** -0.5 * factor)


def load_clip(model, path):
    """Strict load of an HF CLIPModel safetensors file (position_ids buffers ignored)."""
    sd = {k: v for k, v in read_safetensors(path).items() if not k.endswith("position_ids")}
    if "logit_scale" in sd:
        sd["logit_scale"] = sd["logit_scale"].reshape(())
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: missing {missing}, unexpected {unexpected}")


def clip_state_dict(model):
    return {k: v for k, v in model.state_dict().items()}
