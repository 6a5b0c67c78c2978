import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CapfiltError } from '../core/errors.ts';
import { convert } from '../models/blip/convert.ts';
import { loadBlipConfig } from '../models/blip/config.ts';
import { MANIFEST_FORMAT } from '../models/blip/loader.ts';
import { isConverted, readManifest } from '../models/runtime/manifest.ts';
import { weightFileOf } from '../models/runtime/weights/source.ts';
import { registerPull } from './models-pull.ts';

/** The `models` command group, shared with other modules that add subcommands (pull). */
export function modelsGroup(program: Command): Command {
  return program.commands.find((c) => c.name() === 'models') ?? program.command('models').description('convert, pull and inspect BLIP models');
}

function describeFolder(dir: string): Record<string, unknown> {
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
  if (!Object.keys(out).length) throw new CapfiltError('MODEL_DIR_INVALID', `${dir}: no BLIP model here (expected config.json, or captioner/ and filter/ folders)`, { dir });
  return out;
}

export function register(program: Command): void {
  const models = modelsGroup(program);
  registerPull(models);
  models
    .command('convert')
    .description('convert a Hugging Face BLIP folder (or a folder with captioner/ and filter/) into ONNX graphs + manifest')
    .argument('<in>', 'Hugging Face model folder, or a folder holding captioner/ and filter/')
    .argument('<out-dir>', 'output folder (gets captioner/ and/or filter/)')
    .option('--precision <p>', 'fp32 or int8 (dynamic quantisation of the linear layers)', 'fp32')
    .action(async (input: string, outDir: string, o: { precision: string }) => {
      if (o.precision !== 'fp32' && o.precision !== 'int8') {
        throw new CapfiltError('CLI_USAGE', `--precision must be fp32 or int8, got "${o.precision}"`, { option: 'precision' });
      }
      const started = Date.now();
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
