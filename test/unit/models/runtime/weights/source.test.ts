import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CapfiltError } from '../../../../../src/core/errors.ts';
import { loadBlipConfig } from '../../../../../src/models/blip/config.ts';
import { expectedWeights, LM_HEAD } from '../../../../../src/models/blip/weights/names.ts';
import { CheckedWeights, checkWeightFiles, openWeightFolder } from '../../../../../src/models/runtime/weights/source.ts';
import { readEntries, shardName, writeSafetensors, writeShardedSafetensors, type StEntry } from '../../../../helpers/safetensors-writer.ts';

const fixtures = new URL('../../../../fixtures/', import.meta.url).pathname;
const t1 = join(fixtures, 'parity/t1/captioner');
const dir = mkdtempSync(join(tmpdir(), 'capfilt-src-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A copy of the t1 captioner folder whose tensors are edited by `edit`. */
function variant(name: string, edit: (m: Map<string, StEntry>) => void): string {
  const out = join(dir, name);
  mkdirSync(out);
  copyFileSync(join(t1, 'config.json'), join(out, 'config.json'));
  const m = readEntries(join(t1, 'model.safetensors'));
  edit(m);
  writeSafetensors(join(out, 'model.safetensors'), Object.fromEntries(m));
  return out;
}

function check(folder: string): CheckedWeights {
  return new CheckedWeights(openWeightFolder(folder), expectedWeights(loadBlipConfig(folder)));
}

function caught(fn: () => unknown): CapfiltError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CapfiltError) return e;
    throw e;
  }
  throw new Error('no error');
}

describe('checked weight folders', () => {
  it('accepts the t1 captioner and resolves the decoder.bias alias', () => {
    const w = check(t1);
    expect(w.get(LM_HEAD.bias).data.length).toBe(96);
    expect(w.source.has(LM_HEAD.decoderBias)).toBe(false);
    w.close();
  });

  it('lists every missing key', () => {
    const folder = variant('missing', (m) => {
      m.delete('vision_model.post_layernorm.weight');
      m.delete('text_decoder.bert.encoder.layer.1.crossattention.self.key.bias');
    });
    const e = caught(() => check(folder));
    expect(e.code).toBe('WEIGHTS_MISSING_KEYS');
    expect(e.message).toContain('2 tensor(s) missing');
    expect(e.message).toContain('vision_model.post_layernorm.weight');
    expect(e.message).toContain('text_decoder.bert.encoder.layer.1.crossattention.self.key.bias');
    expect(e.message).toContain(join(folder, 'model.safetensors'));
  });

  it('lists unexpected keys but ignores position_ids buffers and the decoder.bias alias', () => {
    const folder = variant('unexpected', (m) => {
      const one = { dtype: 'F32', shape: [1], bytes: new Uint8Array(4) };
      m.set('text_decoder.bert.pooler.dense.weight', one);
      m.set('itm_head.weight', one);
      m.set('text_decoder.bert.embeddings.position_ids', { dtype: 'I64', shape: [1], bytes: new Uint8Array(8) });
      m.set(LM_HEAD.decoderBias, m.get(LM_HEAD.bias)!);
    });
    const e = caught(() => check(folder));
    expect(e.code).toBe('WEIGHTS_UNEXPECTED_KEYS');
    expect(e.details.unexpected).toEqual(['itm_head.weight', 'text_decoder.bert.pooler.dense.weight']);
  });

  it('falls back to the word embeddings when the LM head decoder weight is absent (tied)', () => {
    const folder = variant('tied', (m) => m.delete(LM_HEAD.decoderWeight));
    const w = check(folder);
    const emb = w.get(LM_HEAD.wordEmbeddings).data;
    expect(w.get(LM_HEAD.decoderWeight).data).toEqual(emb);
    w.close();
  });

  it('reports tensors whose shape disagrees with config.json', () => {
    const folder = variant('shape', (m) => {
      m.set('vision_model.post_layernorm.bias', { dtype: 'F32', shape: [2, 16], bytes: m.get('vision_model.post_layernorm.bias')!.bytes });
    });
    const e = caught(() => check(folder));
    expect(e.code).toBe('WEIGHTS_TENSOR_INVALID');
    expect(e.message).toContain('vision_model.post_layernorm.bias [2, 16] (config needs [32])');
  });

  it('builds the same vision graph from F16 and from F32 storage of the same values', async () => {
    const toHalf = (f: number): number => {
      // Round-to-nearest float32 → float16 bits; t1 values are normal and well inside range.
      const b = new DataView(new ArrayBuffer(4));
      b.setFloat32(0, f);
      const x = b.getUint32(0);
      const sign = (x >>> 16) & 0x8000;
      const exp = ((x >>> 23) & 0xff) - 127 + 15;
      if (exp <= 0) return sign;
      let mant = (x >>> 13) & 0x3ff;
      let e = exp;
      if (x & 0x1000) { mant++; if (mant === 0x400) { mant = 0; e++; } }
      return sign | (e << 10) | mant;
    };
    const half = variant('f16', (m) => {
      for (const [k, e] of m) {
        const f = new Float32Array(e.bytes.buffer.slice(e.bytes.byteOffset, e.bytes.byteOffset + e.bytes.byteLength));
        m.set(k, { dtype: 'F16', shape: e.shape, bytes: new Uint8Array(Uint16Array.from(f, toHalf).buffer) });
      }
    });
    const w16 = check(half);
    const rounded = variant('f16-as-f32', (m) => {
      for (const k of m.keys()) m.set(k, { dtype: 'F32', shape: w16.source.shape(k), bytes: new Uint8Array(w16.source.get(k).data.buffer) });
    });
    expect(w16.get('vision_model.encoder.layers.0.mlp.fc1.weight').sourceDtype).toBe('F16');
    const { loadModel, releaseModel } = await import('../../../../../src/models/blip/loader.ts');
    const { f32 } = await import('../../../../../src/models/runtime/sessions.ts');
    const opts = { device: 'cpu', threads: 1, precision: 'fp32' as const };
    const [a, b] = [await loadModel(half, opts), await loadModel(rounded, opts)];
    const px = f32(Float32Array.from({ length: 3 * 32 * 32 }, (_, i) => Math.sin(i)), [1, 3, 32, 32]);
    const ya = (await a.sessions.vision.run({ pixel_values: px })).last_hidden_state.data as Float32Array;
    const yb = (await b.sessions.vision.run({ pixel_values: px })).last_hidden_state.data as Float32Array;
    expect(Array.from(ya)).toEqual(Array.from(yb));
    expect(a.info.weightDtypes).toEqual(['F16']);
    await releaseModel(a);
    await releaseModel(b);
    w16.close();
  });

  it('reads pytorch_model.bin when there is no model.safetensors', () => {
    const folder = join(dir, 'bin');
    mkdirSync(folder);
    copyFileSync(join(t1, 'config.json'), join(folder, 'config.json'));
    copyFileSync(join(fixtures, 'pickle/t1_captioner.bin'), join(folder, 'pytorch_model.bin'));
    const w = check(folder);
    const ref = check(t1);
    expect(w.get('vision_model.encoder.layers.1.self_attn.qkv.weight').data).toEqual(ref.get('vision_model.encoder.layers.1.self_attn.qkv.weight').data);
    w.close();
    ref.close();
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    expect(caught(() => openWeightFolder(empty)).code).toBe('MODEL_DIR_INVALID');
  });
});

describe('sharded checkpoints (*.index.json)', () => {
  /** The t1 captioner as `shards` safetensors shards and an index; `edit` may change the index. */
  function sharded(name: string, shards: number, edit?: (index: { weight_map: Record<string, string> }) => void): string {
    const out = join(dir, name);
    mkdirSync(out);
    copyFileSync(join(t1, 'config.json'), join(out, 'config.json'));
    writeShardedSafetensors(out, readEntries(join(t1, 'model.safetensors')), shards);
    if (edit) {
      const file = join(out, 'model.safetensors.index.json');
      const index = JSON.parse(readFileSync(file, 'utf8'));
      edit(index);
      writeFileSync(file, JSON.stringify(index));
    }
    return out;
  }

  it('reads every tensor of a 3-shard safetensors checkpoint as the single file holds it', () => {
    const w = check(sharded('st3', 3));
    const ref = check(t1);
    expect(w.source.file).toMatch(/model\.safetensors\.index\.json$/);
    expect(w.source.keys().sort()).toEqual(ref.source.keys().sort());
    for (const k of ref.source.keys()) expect(w.source.get(k).data).toEqual(ref.source.get(k).data);
    w.close();
    ref.close();
  });

  it('reads a sharded pytorch_model.bin checkpoint, each tensor from the shard the index names', () => {
    const folder = join(dir, 'bin-sharded');
    mkdirSync(folder);
    copyFileSync(join(t1, 'config.json'), join(folder, 'config.json'));
    // Two copies of the whole state dict; the index takes each tensor from one of them.
    for (const f of ['pytorch_model-00001-of-00002.bin', 'pytorch_model-00002-of-00002.bin']) copyFileSync(join(fixtures, 'pickle/t1_captioner.bin'), join(folder, f));
    const ref = check(t1);
    const names = ref.source.keys().sort();
    const weightMap = Object.fromEntries(names.map((n, i) => [n, `pytorch_model-0000${(i % 2) + 1}-of-00002.bin`]));
    writeFileSync(join(folder, 'pytorch_model.bin.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const w = check(folder);
    expect(w.source.keys().sort()).toEqual(names);
    for (const k of names) expect(w.source.get(k).data).toEqual(ref.source.get(k).data);
    w.close();
    ref.close();
  });

  it('prefers model.safetensors to an index beside it, as transformers does', () => {
    const folder = sharded('both', 2);
    copyFileSync(join(t1, 'model.safetensors'), join(folder, 'model.safetensors'));
    const w = openWeightFolder(folder);
    expect(w.file).toMatch(/model\.safetensors$/);
    w.close();
  });

  it('refuses an index that points outside its folder, names a missing shard or misplaces a tensor', () => {
    const name = 'vision_model.post_layernorm.weight';
    const escaped = sharded('escape', 2, (ix) => { ix.weight_map[name] = '../model.safetensors'; });
    const e1 = caught(() => openWeightFolder(escaped));
    expect(e1.code).toBe('MODEL_DIR_INVALID');
    expect(e1.message).toMatch(/"\.\.\/model\.safetensors", which is not a file name beside the index/);
    const absolute = sharded('absolute', 2, (ix) => { ix.weight_map[name] = join(t1, 'model.safetensors'); });
    expect(caught(() => openWeightFolder(absolute)).code).toBe('MODEL_DIR_INVALID');
    const missing = sharded('missing-shard', 2);
    rmSync(join(missing, shardName(1, 2)));
    expect(caught(() => openWeightFolder(missing)).message).toMatch(/shard model-00002-of-00002\.safetensors is not in/);
    const moved = sharded('misplaced', 2, (ix) => {
      const other = Object.values(ix.weight_map).find((f) => f !== ix.weight_map[name])!;
      ix.weight_map[name] = other;
    });
    const e4 = caught(() => openWeightFolder(moved));
    expect(e4.code).toBe('WEIGHTS_MISSING_KEYS');
    expect(e4.message).toContain(name);
  });

  it('refuses an index that is not JSON or has no weight map, and checks an index against the model like any checkpoint', () => {
    const broken = sharded('not-json', 2);
    writeFileSync(join(broken, 'model.safetensors.index.json'), '{"weight_map": ');
    expect(caught(() => openWeightFolder(broken)).message).toMatch(/not a readable JSON index/);
    const noMap = sharded('no-map', 2, (ix) => { (ix as { weight_map?: unknown }).weight_map = ['a']; });
    expect(caught(() => openWeightFolder(noMap)).message).toMatch(/no "weight_map" object/);
    // A tensor the index leaves out is missing, even though its shard holds it.
    const dropped = sharded('dropped', 2, (ix) => { delete ix.weight_map['vision_model.post_layernorm.weight']; });
    const e = caught(() => check(dropped));
    expect(e.code).toBe('WEIGHTS_MISSING_KEYS');
    expect(e.message).toMatch(/index\.json: 1 tensor\(s\) missing: vision_model\.post_layernorm\.weight/);
  });
});

describe('Git LFS pointers instead of weights', () => {
  const pointer = 'version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 247072\n';

  it('is WEIGHTS_LFS_POINTER for model.safetensors, pytorch_model.bin and a shard, when opened and in the preflight check', () => {
    for (const [name, file] of [['lfs-st', 'model.safetensors'], ['lfs-bin', 'pytorch_model.bin']]) {
      const folder = join(dir, name);
      mkdirSync(folder);
      copyFileSync(join(t1, 'config.json'), join(folder, 'config.json'));
      writeFileSync(join(folder, file), pointer);
      const e = caught(() => openWeightFolder(folder));
      expect(e.code).toBe('WEIGHTS_LFS_POINTER');
      expect(e.message).toMatch(/git lfs pull/);
      expect(caught(() => checkWeightFiles(folder)).code).toBe('WEIGHTS_LFS_POINTER');
    }
    const sharded = join(dir, 'lfs-shard');
    mkdirSync(sharded);
    copyFileSync(join(t1, 'config.json'), join(sharded, 'config.json'));
    writeShardedSafetensors(sharded, readEntries(join(t1, 'model.safetensors')), 2);
    checkWeightFiles(sharded);
    writeFileSync(join(sharded, shardName(1, 2)), pointer);
    expect(caught(() => openWeightFolder(sharded)).message).toMatch(/model-00002-of-00002\.safetensors: a Git LFS pointer/);
    expect(caught(() => checkWeightFiles(sharded)).code).toBe('WEIGHTS_LFS_POINTER');
  });
});
