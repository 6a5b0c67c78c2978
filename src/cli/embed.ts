import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { CapfiltError } from '../core/errors.ts';
import { DEFAULT_CLIP_BATCH, type ClipBatchSizes, type ClipEmbedder } from '../models/clip/embedder.ts';
import type { ClipGraphName } from '../models/clip/graphs.ts';
import { cosineMatrix, loadClip } from '../models/clip/index.ts';
import type { ImageInput, PerImage } from '../models/runtime/types.ts';
import { addRuntimeOptions, numberOption, runtimeOptions } from './model-options.ts';

/**
 * `capfilt embed --model CLIP_DIR [image …] [--text TEXT]…`: CLIP embeddings of images and
 * texts and their cosine / logit matrices. Only the towers the inputs need are loaded. An image
 * that cannot be read or decoded fails alone with its code (exit code 1, the rest still printed).
 */

interface RuntimeFlags {
  device: string;
  threads: string;
  precision: string;
}

interface EmbedFlags extends RuntimeFlags {
  model: string;
  text: string[];
  json?: boolean;
  embeddings: boolean;
  batchSize?: string;
}

/**
 * Reads image files one by one: a file that cannot be read fails alone (INPUT_UNREADABLE), as a
 * file that cannot be decoded does later (IMAGE_DECODE_FAILED).
 */
export async function readImageFiles(paths: string[]): Promise<(ImageInput | { key: string; code: string; message: string })[]> {
  return Promise.all(paths.map(async (p) => {
    try {
      return { key: p, bytes: new Uint8Array(await readFile(p)) };
    } catch (e) {
      return { key: p, code: 'INPUT_UNREADABLE', message: `cannot read image (${(e as Error).message})` };
    }
  }));
}

/** Embeds image files in order; unreadable files fail alone, without reaching the model. */
export async function embedImageFiles(embedder: ClipEmbedder, paths: string[]): Promise<PerImage<Float32Array>[]> {
  const read = await readImageFiles(paths);
  const readable = read.filter((r): r is ImageInput => 'bytes' in r);
  const embedded = readable.length ? await embedder.embedImages(readable) : [];
  let k = 0;
  return read.map((r) => ('bytes' in r ? embedded[k++] : { key: r.key, ok: false as const, code: r.code, message: r.message }));
}

export function towersFor(images: number, texts: number): ClipGraphName[] {
  const towers: ClipGraphName[] = [];
  if (images) towers.push('vision');
  if (texts) towers.push('text');
  return towers;
}

function batchSizes(value: string | undefined): ClipBatchSizes {
  if (value === undefined) return DEFAULT_CLIP_BATCH;
  const n = numberOption('batch-size', value, 1, 65536, true);
  return { images: n, texts: n };
}

const vector = (v: Float32Array): number[] => Array.from(v);

function clip(s: string, width: number): string {
  return s.length <= width ? s : `${s.slice(0, width - 1)}…`;
}

function preview(v: Float32Array): string {
  return `[${Array.from(v.slice(0, 4), (x) => x.toFixed(4)).join(', ')}${v.length > 4 ? ', …' : ''}] (${v.length} dims)`;
}

/** The cosine table for people: one row per image, one column per text (headers cut at 24). */
export function cosineTable(images: PerImage<Float32Array>[], texts: string[], cosine: (number[] | null)[]): string {
  const headers = texts.map((t) => clip(t, 24));
  const widths = headers.map((h) => Math.max(7, h.length));
  const labels = images.map((im) => basename(im.key));
  const labelWidth = Math.max(5, ...labels.map((l) => l.length));
  const lines = [[' '.repeat(labelWidth), ...headers.map((h, j) => h.padStart(widths[j]))].join('  ')];
  images.forEach((im, i) => {
    const row = cosine[i];
    const cells = im.ok && row ? row.map((c, j) => c.toFixed(4).padStart(widths[j])) : [`failed: ${im.ok ? 'INTERNAL' : im.code}`];
    lines.push([labels[i].padEnd(labelWidth), ...cells].join('  '));
  });
  return `${lines.join('\n')}\n`;
}

export function register(program: Command): void {
  addRuntimeOptions(program
    .command('embed')
    .description('CLIP embeddings of images and texts, with their cosine and logit matrices')
    .requiredOption('--model <dir>', 'CLIP model folder, Hugging Face (CLIPModel) or converted')
    .option('--text <text>', 'a text to embed (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--json', 'print JSON: model, dim, logit_scale, images, texts, cosine [image][text], logits_per_image')
    .option('--no-embeddings', 'leave the embedding vectors out (print only the matrices)')
    .option('--batch-size <n>', `rows per session run, images and texts (default ${DEFAULT_CLIP_BATCH.images} images, ${DEFAULT_CLIP_BATCH.texts} texts)`))
    .argument('[image...]', 'image files')
    .action(async (images: string[], o: EmbedFlags) => {
      const texts = o.text;
      if (!images.length && !texts.length) throw new CapfiltError('CLI_USAGE', 'give at least one image file or --text', {});
      const batch = batchSizes(o.batchSize);
      const model = resolve(o.model);
      const { embedder } = await loadClip(model, runtimeOptions(o), { towers: towersFor(images.length, texts.length), batch });
      try {
        const imageResults = images.length ? await embedImageFiles(embedder, images) : [];
        const textEmbeds = texts.length ? await embedder.embedTexts(texts) : [];
        const scale = embedder.logitScale;
        const cosine: (number[] | null)[] = imageResults.map((r) => (r.ok ? cosineMatrix([r.value], textEmbeds)[0] : null));
        if (o.json) {
          const out = {
            model,
            dim: embedder.dim,
            logit_scale: scale,
            images: imageResults.map((r) => (r.ok
              ? { file: r.key, ok: true, ...(o.embeddings ? { embedding: vector(r.value) } : {}) }
              : { file: r.key, ok: false, code: r.code, message: r.message })),
            texts: texts.map((text, j) => ({ text, ...(o.embeddings ? { embedding: vector(textEmbeds[j]) } : {}) })),
            cosine,
            logits_per_image: cosine.map((row) => row?.map((c) => scale * c) ?? null),
          };
          process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
        } else {
          for (const r of imageResults) if (!r.ok) process.stderr.write(`${r.key}: ${r.message}\n`);
          process.stdout.write(`${model}: ${embedder.dim}-dim embeddings, logit scale ${scale.toFixed(2)}\n`);
          if (imageResults.length && texts.length) {
            process.stdout.write(`cosine [image × text]\n${cosineTable(imageResults, texts, cosine)}`);
          } else if (o.embeddings) {
            for (const r of imageResults) if (r.ok) process.stdout.write(`${basename(r.key)}\t${preview(r.value)}\n`);
            texts.forEach((t, j) => process.stdout.write(`${JSON.stringify(t)}\t${preview(textEmbeds[j])}\n`));
          }
        }
        if (imageResults.some((r) => !r.ok)) process.exitCode = 1;
      } finally {
        await embedder.close();
      }
    });
}
