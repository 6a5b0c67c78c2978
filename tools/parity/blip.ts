/**
 * BLIP parity (captioner = BlipForConditionalGeneration, filter = BlipForImageTextRetrieval):
 * converts the folder's models as `capfilt models convert` does, loads the converted graphs,
 * runs every section vectors.json records and compares ids exactly and floats within tolerance.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { describeError } from '../../src/core/errors.ts';
import { convertModel } from '../../src/models/blip/convert.ts';
import { OrtDecoderSession } from '../../src/models/blip/decoder-session.ts';
import { itmProbability } from '../../src/models/blip/filter.ts';
import { generate } from '../../src/models/runtime/generation/index.ts';
import { promptPrefix } from '../../src/models/blip/prompt.ts';
import { loadModel, releaseModel, type LoadedModel } from '../../src/models/blip/loader.ts';
import { normalizeInto, preprocessImages } from '../../src/models/runtime/preprocess.ts';
import { f32, i64 } from '../../src/models/runtime/sessions.ts';
import { maxAbs, reporter, rows, tensor, type Json, type ParityReport, type VTensor } from './common.ts';
import type { DecoderSession, GenerationOptions } from '../../src/models/runtime/generation/types.ts';

/** Records the logits a DecoderSession hands out and which original row each output row continues. */
class RecordingSession implements DecoderSession {
  readonly steps: { logits: Float32Array; origin: number[] }[] = [];
  private origin: number[];
  constructor(private readonly inner: DecoderSession) {
    this.origin = Array.from({ length: inner.rows }, (_, i) => i);
  }
  get vocabSize(): number {
    return this.inner.vocabSize;
  }
  get rows(): number {
    return this.inner.rows;
  }
  async step(tokens: number[][]): Promise<Float32Array> {
    const out = await this.inner.step(tokens);
    this.steps.push({ logits: out.slice(), origin: [...this.origin] });
    return out;
  }
  select(indices: number[]): void {
    this.origin = indices.map((i) => this.origin[i]);
    this.inner.select(indices);
  }
  close(): void {
    this.inner.close();
  }
}

export async function runBlipParity(vectorsDir: string, print: (line: string) => void = console.log): Promise<ParityReport> {
  const v = JSON.parse(readFileSync(join(vectorsDir, 'vectors.json'), 'utf8')) as Json;
  const tol: number = v.tolerance.float_abs;
  const { record, finish } = reporter(print);
  const runtime = { device: 'cpu', threads: 0, precision: 'fp32' as const };
  const work = mkdtempSync(join(tmpdir(), 'capfilt-parity-'));
  const models: Record<string, LoadedModel> = {};
  try {
    for (const [role, m] of Object.entries(v.models as Record<string, Json>)) {
      const src = join(vectorsDir, dirname(m.config));
      // The recorded weights file if it is there; otherwise whatever checkpoint the folder holds.
      const recorded = m.weights ? join(vectorsDir, m.weights) : undefined;
      await convertModel(src, join(work, role), 'fp32', recorded && existsSync(recorded) ? recorded : undefined);
      models[role] = await loadModel(join(work, role), runtime);
      print(`converted ${role} (${m.architecture}) from ${src}`);
    }
    const px = tensor(v.inputs.pixel_values);
    const embeds: Record<string, ort.Tensor> = {};
    const imageFeat: Record<string, ort.Tensor> = {};
    for (const [role, m] of Object.entries(models)) {
      const out = await m.sessions.vision.run({ pixel_values: px });
      embeds[role] = out.last_hidden_state;
      if (out.image_feat) imageFeat[role] = out.image_feat;
      const want = v.vision?.[`${role}_last_hidden_state`] as VTensor | undefined;
      if (want) record('vision', `${role}_last_hidden_state`, maxAbs(out.last_hidden_state.data as Float32Array, want.data), tol);
    }

    const cap = models.captioner;
    if (cap) {
      const sp = v.special_ids;
      const idsOk = cap.special.bos === sp.bos && cap.special.sep === sp.sep && cap.special.pad === sp.pad
        && (!v.captioner_greedy || (cap.special.eos === v.captioner_greedy.eos_token_id && cap.special.pad === v.captioner_greedy.pad_token_id));
      record('captioner', 'special_ids', idsOk ? 0 : 1, 0, `runtime ${JSON.stringify(cap.special)}`);
    }
    if (cap && v.captioner_teacher_forced) {
      const tf = v.captioner_teacher_forced;
      const [B] = tf.input_ids.shape;
      const { heads, hiddenSize, layers } = cap.cfg.text;
      const cross = await cap.sessions.cross_kv.run({ image_embeds: embeds.captioner });
      const [, S] = tf.input_ids.shape;
      // No cache (capacity 0): the graph's mask is then the padding mask itself.
      const feeds: Record<string, ort.Tensor> = {
        input_ids: tensor(tf.input_ids),
        position_ids: i64(Array.from({ length: B * S }, (_, i) => i % S), [B, S]),
        attention_mask: tensor(tf.attention_mask),
      };
      for (let l = 0; l < layers; l++) {
        feeds[`past_key_${l}`] = f32(new Float32Array(0), [B, heads, 0, hiddenSize / heads]);
        feeds[`past_value_${l}`] = f32(new Float32Array(0), [B, heads, 0, hiddenSize / heads]);
        feeds[`cross_key_${l}`] = cross[`cross_key_${l}`];
        feeds[`cross_value_${l}`] = cross[`cross_value_${l}`];
      }
      const out = await cap.sessions.decoder.run(feeds, ['logits']);
      record('captioner_teacher_forced', 'logits', maxAbs(out.logits.data as Float32Array, tf.logits.data), tol);
    }
    if (cap && v.captioner_greedy) {
      const gr = v.captioner_greedy;
      for (const variant of ['no_prompt', 'with_prompt']) {
        const c = gr[variant] as Json | undefined;
        if (!c) continue;
        // As HF generate: the processor's [cls, prompt…, sep] becomes [bos, prompt…].
        const prefix = c.prompt_input_ids
          ? rows(c.prompt_input_ids).map((r) => promptPrefix(r, cap.special.bos))
          : rows(c.decoder_input_ids);
        record(`captioner_greedy.${variant}`, 'decoder_input_ids', maxAbs(prefix.flat(), c.decoder_input_ids.data), 0);
        const session = new RecordingSession(await OrtDecoderSession.open(cap.cfg, cap.sessions.cross_kv, cap.sessions.decoder, embeds.captioner));
        const options: GenerationOptions = {
          method: 'greedy', maxLength: gr.max_length, minLength: 0, numBeams: 1, lengthPenalty: 1, topP: 1, topK: 0,
          temperature: 1, repetitionPenalty: 1, numReturnSequences: 1, prompt: '', seed: 0,
        };
        const seqs = (await generate(session, prefix, options, cap.special, prefix.map((_, i) => `parity-${i}`))).map((s) => s[0]);
        session.close();
        const want = rows(c.sequences);
        // HF pads finished rows to the batch's length; compare each row up to its own sep.
        const trimmed = (r: number[]): number[] => {
          const end = r.indexOf(cap.special.eos, prefix[0].length);
          return end < 0 ? r : r.slice(0, end + 1);
        };
        const diff = want.reduce((n, w, i) => n + (JSON.stringify(trimmed(seqs[i])) === JSON.stringify(trimmed(w)) ? 0 : 1), 0);
        record(`captioner_greedy.${variant}`, 'sequences', diff, 0, `ids ${JSON.stringify(seqs)}`);
        const [, steps, V] = c.step_logits.shape as number[];
        let err = session.steps.length === 0 ? Infinity : 0;
        let compared = 0;
        session.steps.slice(0, steps).forEach(({ logits, origin }, t) => {
          origin.forEach((b, r) => {
            // Past a row's sep HF only pads; the reference logits there are not decisions.
            if (prefix[b].length + t >= trimmed(want[b]).length) return;
            const off = (b * steps + t) * V;
            err = Math.max(err, maxAbs(logits.subarray(r * V, (r + 1) * V), c.step_logits.data.slice(off, off + V)));
            compared++;
          });
        });
        if (compared === 0) err = Infinity;
        record(`captioner_greedy.${variant}`, 'step_logits', err, tol);
      }
    }

    const fil = models.filter;
    if (fil && v.filter_itm) {
      const it = v.filter_itm;
      const [B, L] = it.input_ids.shape;
      const images = embeds.filter.dims[0];
      // Rows grouped by image: image i × every text j.
      const ids = Array.from({ length: images }, () => it.input_ids.data).flat();
      const mask = Array.from({ length: images }, () => it.attention_mask.data).flat();
      const out = await fil.sessions.text_filter.run({ input_ids: i64(ids, [images * B, L]), attention_mask: i64(mask, [images * B, L]), image_embeds: embeds.filter });
      const logits = out.itm_logits.data as Float32Array;
      record('filter_itm', 'itm_logits', maxAbs(logits, it.itm_logits.data), tol);
      const probs = Array.from({ length: images * B }, (_, r) => itmProbability(logits[2 * r], logits[2 * r + 1]));
      record('filter_itm', 'itm_prob', maxAbs(probs, it.itm_prob.data), tol);
      if (it.text_cls_hidden) record('filter_itm', 'text_cls_hidden', maxAbs(out.itm_cls.data as Float32Array, it.text_cls_hidden.data), tol);
    }
    if (fil && v.filter_itc) {
      const ic = v.filter_itc;
      const [B, L] = ic.input_ids.shape;
      // text_feat does not depend on the image; any image embeddings satisfy the graph's input.
      const one = f32((embeds.filter.data as Float32Array).slice(0, embeds.filter.dims[1] * embeds.filter.dims[2]), [1, ...embeds.filter.dims.slice(1)]);
      const out = await fil.sessions.text_filter.run({ input_ids: tensor(ic.input_ids), attention_mask: tensor(ic.attention_mask), image_embeds: one });
      record('filter_itc', 'text_cls_hidden', maxAbs(out.itc_cls.data as Float32Array, ic.text_cls_hidden.data), tol);
      const tf = out.text_feat.data as Float32Array;
      const imf = imageFeat.filter.data as Float32Array;
      record('filter_itc', 'image_feat', maxAbs(imf, ic.image_feat.data), tol);
      record('filter_itc', 'text_feat', maxAbs(tf, ic.text_feat.data), tol);
      const D = fil.cfg.projectionDim;
      const images = imageFeat.filter.dims[0];
      const sim: number[] = [];
      for (let i = 0; i < images; i++) {
        for (let j = 0; j < B; j++) {
          let s = 0;
          for (let k = 0; k < D; k++) s += imf[i * D + k] * tf[j * D + k];
          sim.push(s);
        }
      }
      record('filter_itc', 'sim', maxAbs(sim, ic.sim.data), tol);
    }

    if (v.preprocess) {
      const p = v.preprocess;
      const pre = { imageSize: p.image_size, mean: p.image_mean, std: p.image_std, rescaleFactor: p.rescale_factor };
      const want = p.pixel_values as VTensor;
      const files = (p.images as { file: string }[]).map((img) => new Uint8Array(readFileSync(join(vectorsDir, img.file))));
      const got = await preprocessImages(files, pre);
      const failed = got.errors.find((e) => e !== null);
      if (failed) throw new Error(`preprocess: ${failed.code}: ${failed.message}`);
      const err = maxAbs(got.pixelValues, want.data);
      const per = 3 * p.image_size * p.image_size;
      const normalized = new Float32Array(want.data.length);
      files.forEach((_, n) => normalizeInto(Uint8Array.from(p.resized_uint8.data.slice(n * per, (n + 1) * per)), p.image_size, pre, normalized.subarray(n * per, (n + 1) * per)));
      const normErr = maxAbs(normalized, want.data);
      record('preprocess', 'pixel_values', err, v.tolerance.preprocess_pixel_values_abs, 'approximate (resampler)');
      record('preprocess', 'normalize(resized_uint8)', normErr, tol);
    }
  } catch (e) {
    const { code, message } = describeError(e);
    record('runtime', code, Infinity, 0, message);
  } finally {
    await Promise.all(Object.values(models).map(releaseModel));
    rmSync(work, { recursive: true, force: true });
  }
  return finish();
}

