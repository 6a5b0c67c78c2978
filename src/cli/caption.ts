import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { CapfiltError } from '../core/errors.ts';
import { loadBlip } from '../models/blip/index.ts';
import type { GenerationOptions } from '../models/runtime/generation/types.ts';
import type { ImageInput } from '../models/runtime/types.ts';
import { addRuntimeOptions, numberOption, runtimeOptions } from './model-options.ts';

interface CaptionFlags {
  model: string;
  json?: boolean;
  method: string;
  numBeams: string;
  maxLength: string;
  minLength: string;
  topP: string;
  topK: string;
  temperature: string;
  repetitionPenalty: string;
  lengthPenalty: string;
  k: string;
  prompt: string;
  seed: string;
  device: string;
  threads: string;
  precision: string;
}

export function generationOptions(o: CaptionFlags): GenerationOptions {
  if (!['greedy', 'beam', 'nucleus'].includes(o.method)) {
    throw new CapfiltError('CLI_USAGE', `--method must be greedy, beam or nucleus, got "${o.method}"`, { option: 'method' });
  }
  const maxLength = numberOption('max-length', o.maxLength, 1, 4096, true);
  return {
    method: o.method as GenerationOptions['method'],
    maxLength,
    minLength: numberOption('min-length', o.minLength, 0, maxLength, true),
    numBeams: numberOption('num-beams', o.numBeams, 1, 64, true),
    lengthPenalty: numberOption('length-penalty', o.lengthPenalty, -10, 10),
    topP: numberOption('top-p', o.topP, 0, 1),
    topK: numberOption('top-k', o.topK, 0, 1e6, true),
    temperature: numberOption('temperature', o.temperature, 1e-6, 100),
    repetitionPenalty: numberOption('repetition-penalty', o.repetitionPenalty, 1e-6, 100),
    numReturnSequences: numberOption('k', o.k, 1, 64, true),
    prompt: o.prompt,
    seed: numberOption('seed', o.seed, 0, Number.MAX_SAFE_INTEGER, true),
  };
}

export async function readImages(paths: string[]): Promise<ImageInput[]> {
  return Promise.all(paths.map(async (p) => {
    try {
      return { key: p, bytes: new Uint8Array(await readFile(p)) };
    } catch (e) {
      throw new CapfiltError('CLI_USAGE', `${p}: cannot read image (${(e as Error).message})`, { file: p }, { cause: e });
    }
  }));
}

export function register(program: Command): void {
  addRuntimeOptions(program
    .command('caption')
    .description('write captions for images with the BLIP captioner')
    .requiredOption('--model <dir>', 'model folder: captioner/ (+ filter/), HF or converted, or a captioner folder')
    .option('--json', 'print JSON')
    .option('--method <m>', 'greedy, beam or nucleus', 'greedy')
    .option('--num-beams <n>', 'beam width (beam)', '3')
    .option('--max-length <n>', 'total length cap incl. bos and prompt tokens', '30')
    .option('--min-length <n>', 'minimum total length before [SEP]', '10')
    .option('--top-p <p>', 'nucleus cumulative probability', '0.9')
    .option('--top-k <k>', 'top-k cut before sampling (0: off)', '0')
    .option('--temperature <t>', 'sampling temperature', '1')
    .option('--repetition-penalty <r>', 'repetition penalty', '1.0')
    .option('--length-penalty <l>', 'beam length penalty', '1.0')
    .option('-k, --k <n>', 'captions per image', '1')
    .option('--prompt <text>', 'prompt the decoder continues (stripped from the caption)', 'a picture of ')
    .option('--seed <n>', 'sampling seed', '0'))
    .argument('<image...>', 'image files')
    .action(async (images: string[], o: CaptionFlags) => {
      const options = generationOptions(o);
      const models = await loadBlip(resolve(o.model), runtimeOptions(o));
      try {
        if (!models.captioner) throw new CapfiltError('MODEL_DIR_INVALID', `${o.model}: no captioner model`, { dir: o.model });
        const results = await models.captioner.caption(await readImages(images), options);
        if (o.json) {
          process.stdout.write(`${JSON.stringify(results.map((r) => (r.ok ? { image: r.key, ok: true, captions: r.value } : { image: r.key, ok: false, code: r.code, message: r.message })), null, 2)}\n`);
        } else {
          for (const r of results) {
            if (r.ok) for (const c of r.value) process.stdout.write(`${basename(r.key)}\t${c}\n`);
            else process.stderr.write(`${r.key}: ${r.message}\n`);
          }
        }
        if (results.some((r) => !r.ok)) process.exitCode = 1;
      } finally {
        await models.captioner?.close();
        await models.filter?.close();
      }
    });
}
