import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CapfiltError } from '../../core/errors.ts';
import { childLogger } from '../../core/logger.ts';
import { graphDataBuffer } from '../runtime/graph/builder.ts';
import type { LayerOptions } from '../runtime/graph/layers.ts';
import { MANIFEST, graphFile, isConverted, manifestGraphs, readManifest } from '../runtime/manifest.ts';
import { GraphSession } from '../runtime/sessions.ts';
import type { RuntimeOptions } from '../runtime/types.ts';
import { CheckedWeights, openWeightFolder } from '../runtime/weights/source.ts';
import { CLIP_ARCHITECTURE, loadClipConfig, loadClipPreprocessor, type ClipConfig, type ClipPreprocessorConfig } from './config.ts';
import { CLIP_GRAPHS, buildClipGraphs, type ClipGraphName } from './graphs.ts';
import { LOGIT_SCALE, expectedWeights } from './names.ts';
import { loadClipTokenizer, type ClipTokenizer } from './tokenizer.ts';

/**
 * Loads a CLIP folder into ONNX Runtime sessions, one per tower asked for: a converted folder
 * (manifest.json + graphs, loaded by path) or a Hugging Face CLIPModel folder (graphs built in
 * memory at load time). A worker that only embeds images loads only the vision tower.
 */

export const CLIP_MANIFEST_FORMAT = 'capfilt-clip-onnx/1';

export interface LoadedClip {
  dir: string;
  cfg: ClipConfig;
  pre: ClipPreprocessorConfig;
  sessions: Partial<Record<ClipGraphName, GraphSession>>;
  /** null when the folder has no tokenizer files (text tower fed with ids only, as in parity). */
  tokenizer: ClipTokenizer | null;
  /** The learned temperature parameter as stored (logits use exp of it). */
  logitScale: number;
  info: Record<string, unknown>;
}

/**
 * Layer choices, measured with bench/clip.ts --variants (ViT-B/32, 2 threads, graphs side by
 * side on the same inputs, timed interleaved): both towers run self-attention as one
 * com.microsoft node, the text tower's with unidirectional=1 and the padding mask as mask_index,
 * against the plain q/k/v projections + MatMul/Softmax graph (text: with its additive
 * causal+padding mask). Quiet machine / another job busy on one of the two cores:
 *   fp32  Attention   vision 1.01× / 1.05–1.19×, text 1.04× / 1.08–1.44× (embeddings within 2e-7)
 *   int8  QAttention  vision 1.08× / 1.07×,      text 1.06× / 1.13× (embeddings bit-identical)
 * Packed q/k/v projections, bias-fused Gemm and MultiHeadAttention measured no faster (with
 * the machine half busy; they are not kept).
 */
export function clipLayerOptions(precision: RuntimeOptions['precision']): LayerOptions {
  const int8 = precision === 'int8';
  return { int8, fusedAttention: !int8, quantizedAttention: int8, fusedMaskedAttention: true };
}

function maybeTokenizer(dir: string): ClipTokenizer | null {
  const has = existsSync(join(dir, 'tokenizer.json')) || (existsSync(join(dir, 'vocab.json')) && existsSync(join(dir, 'merges.txt')));
  return has ? loadClipTokenizer(dir) : null;
}

export async function loadClipModel(dir: string, opts: RuntimeOptions, towers: readonly ClipGraphName[] = CLIP_GRAPHS): Promise<LoadedClip> {
  const log = childLogger({ component: 'clip-loader', dir });
  const started = Date.now();
  const cfg = loadClipConfig(dir);
  const pre = loadClipPreprocessor(dir, cfg.vision.imageSize);
  const tokenizer = towers.includes('text') ? maybeTokenizer(dir) : null;
  if (tokenizer && tokenizer.vocabSize > cfg.text.vocabSize) {
    throw new CapfiltError('MODEL_CONFIG_INVALID', `${dir}: the tokenizer has ${tokenizer.vocabSize} ids but text_config.vocab_size is ${cfg.text.vocabSize}`, { dir });
  }
  const sessions: LoadedClip['sessions'] = {};
  let info: Record<string, unknown>;
  let logitScale: number;
  try {
    if (isConverted(dir)) {
      const manifest = readManifest(dir, [CLIP_MANIFEST_FORMAT]);
      if (manifest.architecture !== CLIP_ARCHITECTURE) {
        throw new CapfiltError('MODEL_DIR_INVALID', `${join(dir, MANIFEST)}: architecture ${manifest.architecture} is not ${CLIP_ARCHITECTURE}`, { dir });
      }
      const scale = manifest.extra?.logitScale;
      if (typeof scale !== 'number') throw new CapfiltError('MODEL_DIR_INVALID', `${join(dir, MANIFEST)}: extra.logitScale is missing`, { dir });
      logitScale = scale;
      if (opts.precision !== manifest.precision) log.info({ requested: opts.precision, converted: manifest.precision }, 'using the converted folder\'s precision');
      for (const [name, file] of Object.entries(manifestGraphs(dir, manifest, towers))) {
        sessions[name as ClipGraphName] = await GraphSession.create(`clip_${name}`, file, opts);
      }
      info = { dir, architecture: CLIP_ARCHITECTURE, precision: manifest.precision, converted: true, source: manifest.source };
    } else {
      if (opts.precision === 'fp16') throw new CapfiltError('MODEL_UNSUPPORTED', 'precision fp16: this runtime builds fp32 and int8 graphs only', { dir });
      const weights = new CheckedWeights(openWeightFolder(dir), expectedWeights(cfg));
      try {
        logitScale = weights.get(LOGIT_SCALE).data[0];
        for (const [name, g] of buildClipGraphs(cfg, weights, clipLayerOptions(opts.precision), towers)) {
          sessions[name] = await GraphSession.create(`clip_${name}`, { model: g.model, dataFile: graphFile(name).data, data: graphDataBuffer(g) }, opts);
        }
      } finally {
        weights.close();
      }
      info = { dir, architecture: CLIP_ARCHITECTURE, precision: opts.precision, converted: false, weights: weights.source.file, weightDtypes: weights.sourceDtypes() };
    }
  } catch (e) {
    await Promise.all(Object.values(sessions).map((s) => s.release()));
    throw e;
  }
  log.info({ towers, ms: Date.now() - started }, 'CLIP model loaded');
  return { dir, cfg, pre, sessions, tokenizer, logitScale, info: { ...info, towers, logitScale } };
}

export async function releaseClip(m: LoadedClip): Promise<void> {
  await Promise.all(Object.values(m.sessions).map((s) => s.release()));
}
