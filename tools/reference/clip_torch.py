"""PyTorch reference for CLIPModel: HF transformers' modeling_clip.py forward, written out again
(transformers itself cannot be installed here: no PyPI), for `npm run bench:clip -- --hf`.

Install (Debian bookworm, as root), then run with Debian's own python, not a pyenv shim:

    apt-get install -y python3-torch libopenblas0-openmp
    /usr/bin/python3 tools/reference/clip_torch.py --check test/fixtures/parity/clip-t1
    /usr/bin/python3 tools/reference/clip_torch.py --bench MODEL_DIR --inputs DIR [--threads 2] [--runs 3] [--out DIR] [--quiet-wait S]

--check DIR   loads DIR/model (config.json + model.safetensors), runs the inputs recorded in
              DIR/vectors.json through both towers with both attention paths (eager matmuls, and
              torch's scaled_dot_product_attention where this torch has it) and compares every tensor
              the vectors record (tower outputs, pooled index, similarity logits, and the embeddings
              of the recorded preprocessing) within 1e-4; prints the max errors, exits 1 on a miss.
--bench DIR   loads a CLIPModel folder and times the vision tower on DIR/pixel_values.npy and the
              text tower on DIR/input_ids.npy + DIR/attention_mask.npy (what the TypeScript bench
              feeds its own graphs), best of --runs after one untimed run; prints one JSON object
              (images_per_s, texts_per_s, ...) and writes torch_image_embeds.npy and
              torch_text_embeds.npy into --out so the caller can compare embeddings. Each timing
              records the share of the machine other processes used meanwhile (this machine is
              shared); --quiet-wait S waits up to S seconds for them to go quiet first.

The model, as modeling_clip.py has it (CLIPModel.forward, eval mode, float32):
  vision  Conv2d patch embedding without bias (kernel = stride = patch) → flatten → class
          embedding prepended → + position embedding → pre_layrnorm → pre-LN encoder layers →
          post_layernorm(last_hidden_state[:, 0]) → visual_projection (no bias)
  text    token embedding + position embedding (positions 0..seq-1) → encoder layers with the
          causal mask plus the padding mask (both additive, torch.finfo(float32).min, summed as
          CLIPAttention sums them) → final_layer_norm → pooled at argmax(input_ids) when
          text_config.eos_token_id == 2 (legacy configs), else at the first eos_token_id → text_projection
  layer   x = x + out_proj(attn(layer_norm1(x)));  x = x + fc2(act(fc1(layer_norm2(x))))
          attn: q = q_proj(h)·d^-½, k, v per head, softmax(q·kᵀ + mask)·v (eager), or SDPA
  act     quick_gelu x·σ(1.702x) | gelu (erf) | gelu_new / gelu_pytorch_tanh / gelu_fast (tanh) | relu
  embeds  L2-normalised projections; logits_per_image = exp(logit_scale)·image_embeds·text_embedsᵀ
safetensors is parsed by hand (8-byte header length, JSON header, raw little-endian data): the
`safetensors` package is not installed either.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16, 'F64': torch.float64, 'I64': torch.int64, 'I32': torch.int32}


def load_safetensors(path):
    """name → float32 (or integer) tensor, from the raw file."""
    with open(path, 'rb') as f:
        (n,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(n))
        blob = bytearray(f.read())
    out = {}
    for name, spec in header.items():
        if name == '__metadata__':
            continue
        start, end = spec['data_offsets']
        dtype = DTYPES[spec['dtype']]
        count = (end - start) // torch.tensor([], dtype=dtype).element_size()
        t = torch.frombuffer(blob, dtype=dtype, count=count, offset=start).reshape(spec['shape']) if count else torch.empty(spec['shape'], dtype=dtype)
        out[name] = t.float() if t.is_floating_point() else t.clone()
    return out


def act_fn(name):
    if name == 'quick_gelu':
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name == 'gelu':
        return F.gelu
    if name in ('gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'):
        return lambda x: F.gelu(x, approximate='tanh')
    if name == 'relu':
        return F.relu
    raise ValueError(f'hidden_act {name} is not supported')


HAS_SDPA = hasattr(F, 'scaled_dot_product_attention')


class Tower:
    """One CLIP encoder stack (CLIPEncoder) over a state dict prefix."""

    def __init__(self, sd, prefix, cfg):
        self.H = cfg['hidden_size']
        self.N = cfg['num_attention_heads']
        self.D = self.H // self.N
        self.eps = cfg.get('layer_norm_eps', 1e-5)
        self.act = act_fn(cfg.get('hidden_act', 'quick_gelu'))
        self.layers = []
        for i in range(cfg['num_hidden_layers']):
            p = f'{prefix}.encoder.layers.{i}.'
            g = lambda n: sd[p + n]
            self.layers.append({k: (g(f'{k}.weight'), g(f'{k}.bias')) for k in (
                'layer_norm1', 'self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj',
                'layer_norm2', 'mlp.fc1', 'mlp.fc2')})

    def ln(self, x, wb):
        return F.layer_norm(x, (self.H,), wb[0], wb[1], self.eps)

    def attention(self, h, L, mask, sdpa):
        B, S, _ = h.shape
        shape = lambda t: t.view(B, S, self.N, self.D).transpose(1, 2)
        scale = self.D ** -0.5
        if sdpa:
            q = shape(F.linear(h, *L['self_attn.q_proj']))
            k = shape(F.linear(h, *L['self_attn.k_proj']))
            v = shape(F.linear(h, *L['self_attn.v_proj']))
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            # CLIPAttention (eager): queries scaled before the product, masks added, softmax, ·v.
            q = shape(F.linear(h, *L['self_attn.q_proj']) * scale)
            k = shape(F.linear(h, *L['self_attn.k_proj']))
            v = shape(F.linear(h, *L['self_attn.v_proj']))
            w = torch.matmul(q, k.transpose(-1, -2))
            if mask is not None:
                w = w + mask
            ctx = torch.matmul(torch.softmax(w, dim=-1), v)
        return F.linear(ctx.transpose(1, 2).reshape(B, S, self.H), *L['self_attn.out_proj'])

    def __call__(self, x, mask=None, sdpa=False):
        for L in self.layers:
            x = x + self.attention(self.ln(x, L['layer_norm1']), L, mask, sdpa)
            x = x + F.linear(self.act(F.linear(self.ln(x, L['layer_norm2']), *L['mlp.fc1'])), *L['mlp.fc2'])
        return x


class ClipReference:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, 'config.json')) as f:
            cfg = json.load(f)
        sd = load_safetensors(os.path.join(model_dir, 'model.safetensors'))
        self.vcfg = cfg.get('vision_config', {})
        self.tcfg = cfg.get('text_config', {})
        self.vcfg.setdefault('hidden_act', 'quick_gelu')
        self.tcfg.setdefault('hidden_act', 'quick_gelu')
        self.patch = self.vcfg.get('patch_size', 32)
        self.eos = self.tcfg.get('eos_token_id', 49407)
        self.sd = sd
        self.vision = Tower(sd, 'vision_model', self.vcfg)
        self.text = Tower(sd, 'text_model', self.tcfg)
        self.logit_scale = sd['logit_scale']

    def ln(self, name, x, eps):
        return F.layer_norm(x, (x.shape[-1],), self.sd[f'{name}.weight'], self.sd[f'{name}.bias'], eps)

    def vision_forward(self, pixel_values, sdpa=False):
        sd = self.sd
        eps = self.vcfg.get('layer_norm_eps', 1e-5)
        B = pixel_values.shape[0]
        patches = F.conv2d(pixel_values, sd['vision_model.embeddings.patch_embedding.weight'], stride=self.patch)
        patches = patches.flatten(2).transpose(1, 2)
        cls = sd['vision_model.embeddings.class_embedding'].expand(B, 1, -1)
        x = torch.cat([cls, patches], dim=1) + sd['vision_model.embeddings.position_embedding.weight'][: patches.shape[1] + 1]
        x = self.ln('vision_model.pre_layrnorm', x, eps)
        last = self.vision(x, None, sdpa)
        pooled = self.ln('vision_model.post_layernorm', last[:, 0, :], eps)
        proj = F.linear(pooled, sd['visual_projection.weight'])
        return {'last_hidden_state': last, 'pooler_output': pooled, 'image_embeds_unnormalized': proj,
                'image_embeds': proj / proj.norm(p=2, dim=-1, keepdim=True)}

    def text_mask(self, input_ids, attention_mask):
        """_create_4d_causal_attention_mask + _prepare_4d_attention_mask, summed as CLIPAttention adds them."""
        B, S = input_ids.shape
        lo = torch.finfo(torch.float32).min
        causal = torch.full((S, S), lo).triu(1)[None, None]
        if attention_mask is None:
            return causal.expand(B, 1, S, S)
        pad = (1.0 - attention_mask[:, None, None, :].float()) * lo
        return causal + pad

    def text_forward(self, input_ids, attention_mask=None, sdpa=False):
        sd = self.sd
        eps = self.tcfg.get('layer_norm_eps', 1e-5)
        S = input_ids.shape[1]
        x = sd['text_model.embeddings.token_embedding.weight'][input_ids] + sd['text_model.embeddings.position_embedding.weight'][:S]
        last = self.text(x, self.text_mask(input_ids, attention_mask), sdpa)
        last = self.ln('text_model.final_layer_norm', last, eps)
        ids = input_ids.to(torch.int)
        index = ids.argmax(dim=-1) if self.eos == 2 else (ids == self.eos).int().argmax(dim=-1)
        pooled = last[torch.arange(last.shape[0]), index]
        proj = F.linear(pooled, sd['text_projection.weight'])
        return {'last_hidden_state': last, 'pooler_output': pooled, 'pool_index': index,
                'text_embeds_unnormalized': proj, 'text_embeds': proj / proj.norm(p=2, dim=-1, keepdim=True)}


def vtensor(v):
    dtype = torch.int64 if v['dtype'] == 'int64' else torch.float32
    return torch.tensor(v['data'], dtype=dtype).reshape(v['shape'])


def check(vectors_dir):
    with open(os.path.join(vectors_dir, 'vectors.json')) as f:
        vec = json.load(f)
    model = ClipReference(os.path.join(vectors_dir, 'model'))
    tol = 1e-4
    worst = {}
    failed = []
    paths = [('eager', False)] + ([('sdpa', True)] if HAS_SDPA else [])
    if not HAS_SDPA:
        print(f'torch {torch.__version__} has no scaled_dot_product_attention: checking the eager path only')

    def record(path, section, name, got, want):
        got = got.detach().double().reshape(-1)
        want = torch.tensor(want['data'], dtype=torch.float64).reshape(-1)
        err = float('inf') if got.numel() != want.numel() else float((got - want).abs().max()) if got.numel() else 0.0
        limit = 0 if name == 'pool_index' else tol
        ok = err <= limit
        key = f'{section}.{name}'
        worst[key] = max(worst.get(key, 0.0), err)
        print(f'{"ok  " if ok else "FAIL"} [{path}] {key:50s} max abs err {err:.3e} (tol {limit:g})')
        if not ok:
            failed.append(f'[{path}] {key}')

    inputs = vec['inputs']
    with torch.inference_mode():
        for path, sdpa in paths:
            img = txt = None
            if 'pixel_values' in inputs:
                out = model.vision_forward(vtensor(inputs['pixel_values']), sdpa)
                img = out['image_embeds']
                for name, want in vec.get('vision', {}).items():
                    record(path, 'vision', name, out[name], want)
            if 'input_ids' in inputs:
                ids = vtensor(inputs['input_ids'])
                mask = vtensor(inputs['attention_mask']) if 'attention_mask' in inputs else None
                out = model.text_forward(ids, mask, sdpa)
                txt = out['text_embeds']
                for name, want in vec.get('text', {}).items():
                    if name == 'pooler_output_without_attention_mask':
                        record(path, 'text', name, model.text_forward(ids, None, sdpa)['pooler_output'], want)
                    else:
                        record(path, 'text', name, out[name], want)
            if img is not None and txt is not None:
                scale = model.logit_scale.exp()
                computed = {'cosine': img @ txt.T, 'logit_scale_exp': scale.reshape(1), 'logits_per_image': scale * img @ txt.T,
                            'logits_per_text': scale * txt @ img.T}
                for name, want in vec.get('similarity', {}).items():
                    record(path, 'similarity', name, computed[name], want)
            pre = vec.get('preprocess', {})
            keys = sorted((k for k in pre if k.startswith('image_') and 'pixel_values' in pre[k]), key=lambda k: int(k[6:]))
            if keys and 'image_embeds' in pre:
                px = torch.stack([vtensor(pre[k]['pixel_values']) for k in keys])
                record(path, 'preprocess', 'image_embeds (from recorded pixel_values)', model.vision_forward(px, sdpa)['image_embeds'], pre['image_embeds'])
    print(json.dumps({'check': vectors_dir, 'torch': torch.__version__, 'paths': [p for p, _ in paths], 'tolerance': tol,
                      'max_abs_err': {k: float(f'{v:.3e}') for k, v in worst.items()}, 'failed': failed}, indent=2))
    return 1 if failed else 0


def machine_cpu():
    """(busy, total) CPU seconds of the whole machine (/proc/stat, USER_HZ = 100), or None."""
    try:
        with open('/proc/stat') as f:
            v = [int(x) for x in f.readline().split()[1:9]]  # user … steal (guest is inside user)
    except OSError:
        return None
    return (sum(v) - v[3] - v[4]) / 100.0, sum(v) / 100.0


def others_share(fn):
    """fn()'s result and the share of the machine other processes used meanwhile (0..1, None if unknown)."""
    m0, t0 = machine_cpu(), os.times()
    value = fn()
    m1, t1 = machine_cpu(), os.times()
    if not m0 or not m1 or m1[1] <= m0[1]:
        return value, None
    ours = (t1.user - t0.user) + (t1.system - t0.system)
    return value, round(min(1.0, max(0.0, m1[0] - m0[0] - ours) / (m1[1] - m0[1])), 2)


def wait_quiet(max_s):
    """As bench/clip.ts waitQuiet: until others use under 15% of the machine for 3 s, at most max_s; -1 = gave up."""
    if max_s <= 0:
        return 0
    start, calm = time.perf_counter(), 0
    while time.perf_counter() - start < max_s:
        m0 = machine_cpu()
        time.sleep(1)
        m1 = machine_cpu()
        if not m0 or not m1:
            return 0
        calm = calm + 1 if (m1[0] - m0[0]) / max(1e-9, m1[1] - m0[1]) < 0.15 else 0
        if calm >= 3:
            return round(time.perf_counter() - start, 1)
    return -1


def best_of(runs, fn):
    best = math.inf
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench(model_dir, inputs_dir, threads, runs, out_dir, quiet=0):
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = ClipReference(model_dir)
    load_s = time.perf_counter() - t0
    px = torch.from_numpy(np.load(os.path.join(inputs_dir, 'pixel_values.npy')))
    ids = torch.from_numpy(np.load(os.path.join(inputs_dir, 'input_ids.npy')))
    mask = torch.from_numpy(np.load(os.path.join(inputs_dir, 'attention_mask.npy')))
    sdpa = HAS_SDPA
    res = {}
    with torch.inference_mode():
        img = model.vision_forward(px, sdpa)['image_embeds']
        vision_wait = wait_quiet(quiet)
        vision_s, vision_others = others_share(lambda: best_of(runs, lambda: res.__setitem__('img', model.vision_forward(px, sdpa)['image_embeds'])))
        txt = model.text_forward(ids, mask, sdpa)['text_embeds']
        text_wait = wait_quiet(quiet)
        text_s, text_others = others_share(lambda: best_of(runs, lambda: res.__setitem__('txt', model.text_forward(ids, mask, sdpa)['text_embeds'])))
    img, txt = res.get('img', img), res.get('txt', txt)
    if out_dir:
        np.save(os.path.join(out_dir, 'torch_image_embeds.npy'), img.numpy().astype(np.float32))
        np.save(os.path.join(out_dir, 'torch_text_embeds.npy'), txt.numpy().astype(np.float32))
    print(json.dumps({
        'reference': 'tools/reference/clip_torch.py (modeling_clip.py forward re-implemented)',
        'torch': torch.__version__,
        'blas': 'see torch.__config__.show(); Debian python3-torch links the system BLAS (libopenblas0-openmp)',
        'attention': 'scaled_dot_product_attention' if sdpa else 'eager matmuls (this torch has no SDPA)',
        'threads': torch.get_num_threads(),
        'load_s': round(load_s, 3),
        'image_batch': int(px.shape[0]),
        'images_per_s': round(px.shape[0] / vision_s, 2),
        'vision_batch_s': round(vision_s, 3),
        'vision_others_cpu_share': vision_others,
        'vision_quiet_wait_s': vision_wait,
        'text_batch': int(ids.shape[0]),
        'text_padded_length': int(ids.shape[1]),
        'texts_per_s': round(ids.shape[0] / text_s, 1),
        'text_batch_s': round(text_s, 3),
        'text_others_cpu_share': text_others,
        'text_quiet_wait_s': text_wait,
        'timed_runs': runs,
    }))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--check', metavar='VECTORS_DIR')
    ap.add_argument('--bench', metavar='MODEL_DIR')
    ap.add_argument('--inputs', metavar='DIR')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--out', metavar='DIR')
    ap.add_argument('--quiet-wait', type=float, default=0, metavar='S',
                    help='before each timing, wait up to S seconds for other processes to leave the machine idle')
    a = ap.parse_args()
    if a.check:
        torch.set_num_threads(a.threads)
        return check(a.check)
    if a.bench:
        if not a.inputs:
            ap.error('--bench needs --inputs DIR (pixel_values.npy, input_ids.npy, attention_mask.npy)')
        return bench(a.bench, a.inputs, a.threads, a.runs, a.out, a.quiet_wait)
    ap.error('give --check VECTORS_DIR or --bench MODEL_DIR --inputs DIR')


if __name__ == '__main__':
    sys.exit(main())
