import type { Command } from 'commander';
import { resolve } from 'node:path';
import { cosineMatrix, loadClip } from '../models/clip/index.ts';
import { embedImageFiles } from './embed.ts';
import { addRuntimeOptions, runtimeOptions } from './model-options.ts';

/**
 * `capfilt clip-score --model CLIP_DIR IMAGE TEXT…`: the CLIP score of each text against one
 * image: the cosine of their normalised embeddings, and the logit (logit scale × cosine) CLIP's
 * zero-shot classification takes a softmax over.
 */
export function register(program: Command): void {
  addRuntimeOptions(program
    .command('clip-score')
    .description('CLIP score (cosine of the image and text embeddings, and its logit) of texts against an image')
    .requiredOption('--model <dir>', 'CLIP model folder, Hugging Face (CLIPModel) or converted')
    .option('--json', 'print JSON: image, ok, scores [{text, cosine, logit}]'))
    .argument('<image>', 'image file')
    .argument('<text...>', 'texts to score')
    .action(async (image: string, texts: string[], o: { model: string; json?: boolean; device: string; threads: string; precision: string }) => {
      const { embedder } = await loadClip(resolve(o.model), runtimeOptions(o), { towers: ['vision', 'text'] });
      try {
        const [result] = await embedImageFiles(embedder, [image]);
        if (!result.ok) {
          if (o.json) process.stdout.write(`${JSON.stringify({ image, ok: false, code: result.code, message: result.message }, null, 2)}\n`);
          else process.stderr.write(`${image}: ${result.message}\n`);
          process.exitCode = 1;
          return;
        }
        const [cosines] = cosineMatrix([result.value], await embedder.embedTexts(texts));
        const scores = texts.map((text, j) => ({ text, cosine: cosines[j], logit: embedder.logitScale * cosines[j] }));
        if (o.json) process.stdout.write(`${JSON.stringify({ image, ok: true, scores }, null, 2)}\n`);
        else for (const s of scores) process.stdout.write(`cosine=${s.cosine.toFixed(4)}\t${s.text}\n`);
      } finally {
        await embedder.close();
      }
    });
}
