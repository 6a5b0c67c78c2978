/**
 * CLIP parity (CLIPModel, `model/` beside vectors.json): converts the folder as `capfilt models
 * convert` does, loads both towers from the converted graphs, and compares every tensor the
 * vectors record — each tower's outputs (same names as the graph outputs), the pooled position,
 * the similarity section, and the preprocessing of the recorded images. Sections and outputs
 * the vectors do not hold are skipped; sizes, ids and the pooling rule come from the files.
 *
 * Tolerances (parity README): model outputs 1e-4 absolute; preprocessing — the cropped uint8
 * image within 3 levels (mean 0.5), the embeddings of our own preprocessing within 2e-2.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeError } from '../../src/core/errors.ts';
import { convertClip } from '../../src/models/clip/convert.ts';
import { loadClipModel, releaseClip, type LoadedClip } from '../../src/models/clip/loader.ts';
import { centerCrop, decodeRgb, normalizeInto, resizeBicubicPil, shortestEdgeSize, type DecodedRgb } from '../../src/models/runtime/preprocess.ts';
import { f32, i64 } from '../../src/models/runtime/sessions.ts';
import { maxAbs, reporter, tensor, type Json, type ParityReport, type VTensor } from './common.ts';

const MODEL_TOL = 1e-4;
const UINT8_MAX_TOL = 3;
const UINT8_MEAN_TOL = 0.5;
const EMBED_FROM_FILES_TOL = 2e-2;

function meanAbs(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let s = 0;
  for (let i = 0; i < want.length; i++) s += Math.abs(got[i] - want[i]);
  return want.length ? s / want.length : 0;
}

function matmulT(a: Float32Array, b: Float32Array, n: number, m: number, d: number, scale = 1): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += a[i * d + k] * b[j * d + k];
      out.push(scale * s);
    }
  }
  return out;
}

export async function runClipParity(vectorsDir: string, print: (line: string) => void = console.log): Promise<ParityReport> {
  const v = JSON.parse(readFileSync(join(vectorsDir, 'vectors.json'), 'utf8')) as Json;
  const { record, finish } = reporter(print);
  const work = mkdtempSync(join(tmpdir(), 'capfilt-clip-parity-'));
  let model: LoadedClip | null = null;
  try {
    await convertClip(join(vectorsDir, 'model'), join(work, 'clip'), 'fp32');
    model = await loadClipModel(join(work, 'clip'), { device: 'cpu', threads: 0, precision: 'fp32' });
    print(`converted CLIP (text pooling: ${model.cfg.text.pooling}, act ${model.cfg.text.act}/${model.cfg.vision.act}) from ${join(vectorsDir, 'model')}`);
    const D = model.cfg.projectionDim;
    const vision = model.sessions.vision!;
    const text = model.sessions.text!;

    let imageEmb: Float32Array | null = null;
    let textEmb: Float32Array | null = null;
    if (v.inputs?.pixel_values) {
      const out = await vision.run({ pixel_values: tensor(v.inputs.pixel_values) });
      imageEmb = out.image_embeds.data as Float32Array;
      for (const [name, want] of Object.entries((v.vision ?? {}) as Record<string, VTensor>)) {
        const got = out[name];
        record('vision', name, got ? maxAbs(got.data as Float32Array, want.data) : Infinity, MODEL_TOL, got ? undefined : 'no such graph output');
      }
    }
    if (v.inputs?.input_ids) {
      const ids = v.inputs.input_ids as VTensor;
      const mask = (v.inputs.attention_mask as VTensor | undefined) ?? { dtype: 'int64', shape: ids.shape, data: ids.data.map(() => 1) };
      const out = await text.run({ input_ids: tensor(ids), attention_mask: tensor(mask) });
      textEmb = out.text_embeds.data as Float32Array;
      for (const [name, want] of Object.entries((v.text ?? {}) as Record<string, VTensor>)) {
        if (name === 'pooler_output_without_attention_mask') {
          const ones = await text.run({ input_ids: tensor(ids), attention_mask: i64(ids.data.map(() => 1), ids.shape) }, ['pooler_output']);
          record('text', name, maxAbs(ones.pooler_output.data as Float32Array, want.data), MODEL_TOL);
          continue;
        }
        const got = out[name];
        if (!got) {
          record('text', name, Infinity, MODEL_TOL, 'no such graph output');
          continue;
        }
        const values = got.type === 'int64' ? Array.from(got.data as BigInt64Array, Number) : (got.data as Float32Array);
        record('text', name, maxAbs(values, want.data), got.type === 'int64' ? 0 : MODEL_TOL);
      }
    }
    const sim = v.similarity as Record<string, VTensor> | undefined;
    if (sim && imageEmb && textEmb) {
      const nImg = imageEmb.length / D;
      const nTxt = textEmb.length / D;
      const scale = Math.exp(model.logitScale);
      const expected: Record<string, () => number[]> = {
        cosine: () => matmulT(imageEmb!, textEmb!, nImg, nTxt, D),
        logit_scale_exp: () => [scale],
        logits_per_image: () => matmulT(imageEmb!, textEmb!, nImg, nTxt, D, scale),
        logits_per_text: () => matmulT(textEmb!, imageEmb!, nTxt, nImg, D, scale),
      };
      for (const [name, want] of Object.entries(sim)) {
        const got = expected[name] as (() => number[]) | undefined;
        record('similarity', name, got ? maxAbs(got(), want.data) : Infinity, MODEL_TOL, got ? undefined : 'unknown similarity output');
      }
    }
    const pre = v.preprocess as Json | undefined;
    if (pre) {
      const S = model.pre.imageSize;
      const images = Object.keys(pre).filter((k) => /^image_\d+$/.test(k)).sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)));
      const pixels = new Float32Array(images.length * 3 * S * S);
      for (const [n, key] of images.entries()) {
        const p = pre[key] as Json;
        const img: DecodedRgb = await decodeRgb(new Uint8Array(readFileSync(join(vectorsDir, p.file))));
        const rule = model.pre.resize;
        const size = rule?.mode === 'shortest-edge' ? shortestEdgeSize(img.width, img.height, rule.shortestEdge) : { width: S, height: S };
        const resized = resizeBicubicPil(img.data, img.width, img.height, size.width, size.height);
        if (p.resized_uint8) record(`preprocess.${key}`, 'resized_uint8', maxAbs(resized, p.resized_uint8.data), UINT8_MAX_TOL, `mean ${meanAbs(resized, p.resized_uint8.data).toFixed(3)}`);
        const cropped = centerCrop(resized, size.width, size.height, S, S);
        if (p.cropped_uint8) {
          record(`preprocess.${key}`, 'cropped_uint8', maxAbs(cropped, p.cropped_uint8.data), UINT8_MAX_TOL);
          record(`preprocess.${key}`, 'cropped_uint8_mean', meanAbs(cropped, p.cropped_uint8.data), UINT8_MEAN_TOL);
          // From the reference's own uint8 crop, normalisation alone must match at model tolerance.
          const fromRef = new Float32Array(3 * S * S);
          normalizeInto(Uint8Array.from(p.cropped_uint8.data as number[]), S, model.pre, fromRef);
          if (p.pixel_values) record(`preprocess.${key}`, 'normalize(cropped_uint8)', maxAbs(fromRef, p.pixel_values.data), MODEL_TOL);
        }
        const px = pixels.subarray(n * 3 * S * S, (n + 1) * 3 * S * S);
        normalizeInto(cropped, S, model.pre, px);
        if (p.pixel_values) record(`preprocess.${key}`, 'pixel_values', maxAbs(px, p.pixel_values.data), EMBED_FROM_FILES_TOL, 'approximate (resampler)');
      }
      if (pre.image_embeds && images.length) {
        const out = await vision.run({ pixel_values: f32(pixels, [images.length, 3, S, S]) }, ['image_embeds']);
        record('preprocess', 'image_embeds', maxAbs(out.image_embeds.data as Float32Array, pre.image_embeds.data), EMBED_FROM_FILES_TOL);
      }
    }
  } catch (e) {
    const { code, message } = describeError(e);
    record('runtime', code, Infinity, 0, message);
  } finally {
    if (model) await releaseClip(model);
    rmSync(work, { recursive: true, force: true });
  }
  return finish();
}
