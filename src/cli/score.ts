import type { Command } from 'commander';
import { resolve } from 'node:path';
import { CapfiltError } from '../core/errors.ts';
import { loadBlip } from '../models/blip/index.ts';
import { readImages } from './caption.ts';
import { addRuntimeOptions, runtimeOptions } from './model-options.ts';

export function register(program: Command): void {
  addRuntimeOptions(program
    .command('score')
    .description('score texts against an image with the BLIP filter: ITM P(match) and ITC cosine')
    .requiredOption('--model <dir>', 'model folder: filter/ (+ captioner/), HF or converted, or a filter folder')
    .option('--json', 'print JSON'))
    .argument('<image>', 'image file')
    .argument('<text...>', 'texts to score')
    .action(async (image: string, texts: string[], o: { model: string; json?: boolean; device: string; threads: string; precision: string }) => {
      const models = await loadBlip(resolve(o.model), runtimeOptions(o));
      try {
        if (!models.filter) throw new CapfiltError('MODEL_DIR_INVALID', `${o.model}: no filter model`, { dir: o.model });
        const [result] = await models.filter.score([{ image: (await readImages([image]))[0], texts }]);
        if (!result.ok) {
          if (o.json) process.stdout.write(`${JSON.stringify({ image, ok: false, code: result.code, message: result.message }, null, 2)}\n`);
          else process.stderr.write(`${image}: ${result.message}\n`);
          process.exitCode = 1;
          return;
        }
        if (o.json) process.stdout.write(`${JSON.stringify({ image, ok: true, scores: result.value }, null, 2)}\n`);
        else for (const s of result.value) process.stdout.write(`itm=${s.itm.toFixed(4)}\titc=${s.itc.toFixed(4)}\t${s.text}\n`);
      } finally {
        await models.filter?.close();
        await models.captioner?.close();
      }
    });
}
