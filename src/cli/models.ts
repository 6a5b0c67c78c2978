import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CapfiltError } from '../core/errors.ts';
import { convert } from '../models/blip/convert.ts';
import { loadBlipConfig } from '../models/blip/config.ts';
import { MANIFEST_FORMAT } from '../models/blip/loader.ts';
import { isClipConfig, loadClipConfig, loadClipPreprocessor } from '../models/clip/config.ts';
import { convertClip } from '../models/clip/convert.ts';
import { CLIP_MANIFEST_FORMAT } from '../models/clip/loader.ts';
import { readJson } from '../models/runtime/config-files.ts';
import { isConverted, readManifest } from '../models/runtime/manifest.ts';
import { weightFileOf } from '../models/runtime/weights/source.ts';
import { registerPull } from './models-pull.ts';

/** The `models` command group, shared with other modules that add subcommands (pull). */
export function modelsGroup(program: Command): Command {
  return program.commands.find((c) => c.name() === 'models') ?? program.command('models').description('convert, pull and inspect BLIP and CLIP models');
}

/** A folder whose config.json is a CLIP one (model_type "clip" or a CLIPModel architecture). */
export function isClipFolder(dir: string): boolean {
  const file = join(dir, 'config.json');
  return existsSync(file) && isClipConfig(readJson(file));
}

const CLIP_TOKENIZER_FILES = ['tokenizer.json', 'vocab.json', 'merges.txt'];

/**
 * A CLIP folder: tower sizes, HF's pooling rule for the text tower, activations, format and,
 * for a converted folder, its precision and logit scale (exp of the stored parameter, the
 * factor logits_per_image carries; reading it from a Hugging Face folder would open the weights).
 */
function describeClipFolder(dir: string): Record<string, unknown> {
  const cfg = loadClipConfig(dir);
  const pre = loadClipPreprocessor(dir, cfg.vision.imageSize);
  const { text, vision } = cfg;
  const base = {
    dir,
    architecture: 'CLIPModel',
    family: 'clip',
    projectionDim: cfg.projectionDim,
    text: {
      hiddenSize: text.hiddenSize, intermediateSize: text.intermediateSize, layers: text.layers, heads: text.heads,
      vocabSize: text.vocabSize, maxPositions: text.maxPositions, activation: text.act, eps: text.eps,
      bosId: text.bosId, eosId: text.eosId, padId: text.padId, pooling: text.pooling,
    },
    vision: {
      hiddenSize: vision.hiddenSize, intermediateSize: vision.intermediateSize, layers: vision.layers, heads: vision.heads,
      imageSize: vision.imageSize, patchSize: vision.patchSize, seqLen: vision.seqLen, activation: vision.act, eps: vision.eps,
    },
    preprocess: { resize: pre.resize, mean: pre.mean, std: pre.std, rescaleFactor: pre.rescaleFactor },
    tokenizer: CLIP_TOKENIZER_FILES.filter((f) => existsSync(join(dir, f))),
  };
  if (isConverted(dir)) {
    const m = readManifest(dir, [CLIP_MANIFEST_FORMAT]);
    const stored = m.extra?.logitScale;
    return {
      ...base,
      format: 'converted',
      precision: m.precision,
      ...(typeof stored === 'number' ? { logitScale: Math.exp(stored), logitScaleParameter: stored } : {}),
      graphs: m.graphs,
      source: m.source,
    };
  }
  return { ...base, format: 'huggingface', weights: weightFileOf(dir) };
}

function describeFolder(dir: string): Record<string, unknown> {
  if (isClipFolder(dir)) return describeClipFolder(dir);
  const cfg = loadBlipConfig(dir);
  const base = {
    dir,
    architecture: cfg.architecture,
    vision: cfg.vision,
    text: cfg.text,
    projectionDim: cfg.projectionDim,
    tokenizer: ['tokenizer.json', 'vocab.txt'].find((f) => existsSync(join(dir, f))) ?? null,
  };
  if (isConverted(dir)) {
    const m = readManifest(dir, [MANIFEST_FORMAT]);
    return { ...base, format: 'converted', precision: m.precision, graphs: m.graphs, source: m.source };
  }
  return { ...base, format: 'huggingface', weights: weightFileOf(dir) };
}

export function modelInfo(dir: string): Record<string, unknown> {
  if (existsSync(join(dir, 'config.json'))) return describeFolder(dir);
  const out: Record<string, unknown> = {};
  for (const role of ['captioner', 'filter']) {
    if (existsSync(join(dir, role, 'config.json'))) out[role] = describeFolder(join(dir, role));
  }
  if (!Object.keys(out).length) throw new CapfiltError('MODEL_DIR_INVALID', `${dir}: no BLIP or CLIP model here (expected config.json, or captioner/ and filter/ folders)`, { dir });
  return out;
}

export function register(program: Command): void {
  const models = modelsGroup(program);
  registerPull(models);
  models
    .command('convert')
    .description('convert a Hugging Face BLIP folder (or a folder with captioner/ and filter/) or CLIP folder into ONNX graphs + manifest')
    .argument('<in>', 'Hugging Face model folder (BLIP or CLIPModel), or a folder holding captioner/ and filter/')
    .argument('<out-dir>', 'output folder (BLIP: gets captioner/ and/or filter/; CLIP: the converted folder itself)')
    .option('--precision <p>', 'fp32 or int8 (dynamic quantisation of the linear layers)', 'fp32')
    .action(async (input: string, outDir: string, o: { precision: string }) => {
      if (o.precision !== 'fp32' && o.precision !== 'int8') {
        throw new CapfiltError('CLI_USAGE', `--precision must be fp32 or int8, got "${o.precision}"`, { option: 'precision' });
      }
      const started = Date.now();
      if (isClipFolder(resolve(input))) {
        const m = await convertClip(resolve(input), resolve(outDir), o.precision);
        process.stdout.write(`${m.architecture} → ${resolve(outDir)} (${Object.keys(m.graphs).join(', ')}; ${m.precision})\n`);
        process.stdout.write(`converted in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
        return;
      }
      const manifests = await convert(resolve(input), resolve(outDir), o.precision);
      for (const [role, m] of Object.entries(manifests)) {
        process.stdout.write(`${role}: ${m.architecture} → ${join(resolve(outDir), role)} (${Object.keys(m.graphs).join(', ')}; ${m.precision})\n`);
      }
      process.stdout.write(`converted in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    });
  models
    .command('info')
    .description('print what a model folder holds (architecture, sizes, format, sources) as JSON')
    .argument('<dir>', 'model folder')
    .action((dir: string) => {
      process.stdout.write(`${JSON.stringify(modelInfo(resolve(dir)), null, 2)}\n`);
    });
}
