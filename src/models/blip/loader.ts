import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CapfiltError } from '../../core/errors.ts';
import { childLogger } from '../../core/logger.ts';
import { loadBlipConfig, loadPreprocessorConfig, type BlipConfig, type PreprocessorConfig } from './config.ts';
import { graphDataBuffer } from '../runtime/graph/builder.ts';
import { buildGraphs, graphNames, layerOptions } from './graphs.ts';
import { MANIFEST, graphFile, isConverted, manifestGraphs, readManifest } from '../runtime/manifest.ts';
import { GraphSession } from '../runtime/sessions.ts';
import { createRowGraphs, releaseRowGraphs, type RowGraphs } from '../runtime/row-graphs.ts';
import { loadTokenizer, type BlipTokenizer } from './tokenizer.ts';
import type { RuntimeOptions } from '../runtime/types.ts';
import type { SpecialIds } from '../runtime/generation/types.ts';
import { expectedWeights } from './weights/names.ts';
import { CheckedWeights, openWeightFolder } from '../runtime/weights/source.ts';

/**
 * Loads one BLIP model folder into ONNX Runtime sessions: a converted folder (manifest.json,
 * `<graph>.onnx` + external data, loaded by path in seconds) or a Hugging Face folder (graphs
 * built in memory from the checkpoint at load time).
 */

/** /2: the decoder reads a fixed-capacity self-attention cache and returns only each step's K/V. */
export const MANIFEST_FORMAT = 'capfilt-blip-onnx/2';

export interface LoadedModel {
  dir: string;
  cfg: BlipConfig;
  pre: PreprocessorConfig;
  sessions: Record<string, GraphSession>;
  tokenizer: BlipTokenizer | null;
  special: SpecialIds;
  /** For run.json: architecture, source hashes, precision. */
  info: Record<string, unknown>;
  /** The captioner's: each row's log-sum-exp (beam search) and softmax (sampling) of its logits (decoder-session.ts). */
  rowGraphs?: RowGraphs;
}

/**
 * The special ids generation and scoring use: bos/sep/pad from config.json's text_config as
 * HF's BLIP generate reads them, completed from the tokenizer. `eos` is the id decoding stops
 * on, which for BLIP is the separator (`sep_token_id`), not text_config.eos_token_id.
 */
export function resolveSpecialIds(cfg: BlipConfig, tokenizer: BlipTokenizer | null, file: string): SpecialIds {
  const t = tokenizer?.special;
  const ids = {
    bos: cfg.ids.bos ?? t?.bos,
    sep: cfg.ids.sep ?? t?.sep,
    pad: cfg.ids.pad ?? t?.pad,
    cls: t?.cls ?? cfg.ids.cls,
  };
  const missing = Object.entries(ids).filter(([, v]) => v === undefined).map(([k]) => k);
  if (missing.length) {
    throw new CapfiltError('MODEL_CONFIG_INVALID', `${file}: special token id(s) ${missing.join(', ')} are neither in text_config nor in a tokenizer`, { file, missing });
  }
  return { bos: ids.bos!, eos: ids.sep!, sep: ids.sep!, pad: ids.pad!, cls: ids.cls! };
}

function maybeTokenizer(dir: string): BlipTokenizer | null {
  const has = ['tokenizer.json', 'vocab.txt'].some((f) => existsSync(join(dir, f)));
  return has ? loadTokenizer(dir) : null;
}

export async function loadModel(dir: string, opts: RuntimeOptions): Promise<LoadedModel> {
  const log = childLogger({ component: 'blip-loader', dir });
  const started = Date.now();
  const cfg = loadBlipConfig(dir);
  const pre = loadPreprocessorConfig(dir, cfg.vision.imageSize);
  const tokenizer = maybeTokenizer(dir);
  const special = resolveSpecialIds(cfg, tokenizer, join(dir, 'config.json'));
  const sessions: Record<string, GraphSession> = {};
  let info: Record<string, unknown>;
  let rowGraphs: RowGraphs | undefined;
  try {
    if (isConverted(dir)) {
      const manifest = readManifest(dir, [MANIFEST_FORMAT]);
      if (manifest.architecture !== cfg.architecture) {
        throw new CapfiltError('MODEL_DIR_INVALID', `${join(dir, MANIFEST)}: architecture ${manifest.architecture} disagrees with config.json (${cfg.architecture})`, { dir });
      }
      if (opts.precision !== manifest.precision) log.info({ requested: opts.precision, converted: manifest.precision }, 'using the converted folder\'s precision');
      for (const [name, file] of Object.entries(manifestGraphs(dir, manifest, graphNames(cfg.architecture)))) {
        sessions[name] = await GraphSession.create(name, file, opts);
      }
      info = { dir, architecture: cfg.architecture, precision: manifest.precision, converted: true, source: manifest.source };
    } else {
      if (opts.precision === 'fp16') throw new CapfiltError('MODEL_UNSUPPORTED', `precision fp16: this runtime builds fp32 and int8 graphs only`, { dir });
      const weights = new CheckedWeights(openWeightFolder(dir), expectedWeights(cfg));
      try {
        for (const [name, g] of buildGraphs(cfg, weights, layerOptions(opts.precision))) {
          sessions[name] = await GraphSession.create(name, { model: g.model, dataFile: graphFile(name).data, data: graphDataBuffer(g) }, opts);
        }
      } finally {
        weights.close();
      }
      info = { dir, architecture: cfg.architecture, precision: opts.precision, converted: false, weights: weights.source.file, weightDtypes: weights.sourceDtypes() };
    }
    // One thread, beside the decoder's own pool (row-graphs.ts says why).
    if (sessions.decoder) rowGraphs = await createRowGraphs(1);
  } catch (e) {
    await Promise.all(Object.values(sessions).map((s) => s.release()));
    throw e;
  }
  log.info({ architecture: cfg.architecture, ms: Date.now() - started }, 'BLIP model loaded');
  return { dir, cfg, pre, sessions, tokenizer, special, info, rowGraphs };
}

export async function releaseModel(m: LoadedModel): Promise<void> {
  await Promise.all([...Object.values(m.sessions).map((s) => s.release()), releaseRowGraphs(m.rowGraphs)]);
}
