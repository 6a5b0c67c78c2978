import type { Command } from 'commander';
import { resolve } from 'node:path';
import { loadClip } from '../models/clip/index.ts';
import { buildClassifier, classify, loadLabels, loadTemplates } from '../models/zero-shot.ts';
import { readImages } from './caption.ts';
import { addRuntimeOptions, numberOption, runtimeOptions } from './model-options.ts';

/**
 * `capfilt label --model CLIP_DIR --labels classes.txt [--templates simple|imagenet|FILE] images…`:
 * zero-shot labels, as in the CLIP paper: class embeddings from the prompt-template ensemble,
 * computed once, then softmax(logit_scale · cosine) per image.
 */
export function register(program: Command): void {
  addRuntimeOptions(program
    .command('label')
    .description('zero-shot labels for images with a CLIP model (prompt-template ensemble, softmax over the classes)')
    .requiredOption('--model <dir>', 'CLIP model folder (Hugging Face CLIPModel or converted)')
    .requiredOption('--labels <file>', 'class names, one per line')
    .option('--templates <set>', 'simple ("a photo of a {}."), imagenet (the CLIP paper\'s 80), or a file with one template per line', 'simple')
    .option('--top-k <n>', 'labels printed per image (default 5, or every class when there are fewer)')
    .option('--json', 'one JSON object per image'))
    .argument('<images...>', 'image files')
    .action(async (images: string[], o: { model: string; labels: string; templates: string; topK?: string; json?: boolean; device: string; threads: string; precision: string }) => {
      const labels = loadLabels(o.labels);
      const templates = loadTemplates(o.templates);
      const topK = o.topK === undefined ? Math.min(5, labels.length) : numberOption('top-k', o.topK, 1, labels.length, true);
      const inputs = await readImages(images);
      const { embedder } = await loadClip(resolve(o.model), runtimeOptions(o));
      try {
        const classifier = await buildClassifier(embedder, labels, templates);
        const embedded = await embedder.embedImages(inputs);
        embedded.forEach((r, i) => {
          if (!r.ok) {
            process.exitCode = 1;
            if (o.json) process.stdout.write(`${JSON.stringify({ image: images[i], ok: false, code: r.code, message: r.message })}\n`);
            else process.stderr.write(`${images[i]}: ${r.code}: ${r.message}\n`);
            return;
          }
          const top = classify(classifier, r.value, topK);
          if (o.json) process.stdout.write(`${JSON.stringify({ image: images[i], ok: true, labels: top })}\n`);
          else process.stdout.write(`${images[i]}\t${top.map((t) => `${t.label} ${(100 * t.prob).toFixed(1)}%`).join('\t')}\n`);
        });
      } finally {
        await embedder.close();
      }
    });
}
