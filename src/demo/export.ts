import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { captionVariants, paraphrases, swappedCaption } from './captions.ts';
import { DEFAULT_MIX, generateDemoPair, type DemoPair, type NoiseMix } from './pairs.ts';
import { Rng, streamSeed } from './prng.ts';
import { renderScene, type ImageFormat } from './render.ts';

export interface ExportOptions {
  n: number;
  seed: number;
  outDir: string;
  /** Image side in pixels. */
  size: number;
  format: ImageFormat;
  quality: number;
  mix?: Partial<NoiseMix>;
  /** Swapped (hard negative) captions written per row for training. */
  swappedPerRow: number;
  /** Images rendered concurrently (sharp runs them on the libuv pool). */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

/**
 * One line of `pairs.jsonl`. Besides the noisy pair it carries the texts a trainer needs: every
 * caption the captioner should learn, every correct wording, and hard negatives.
 */
export interface ExportRow {
  key: string;
  file: string;
  caption: string;
  web_text: string;
  label: DemoPair['label'];
  scene: DemoPair['scene'];
  captions: string[];
  paraphrases: string[];
  swapped: string[];
}

export function exportRow(pair: DemoPair, file: string, seed: number, swappedPerRow: number): ExportRow {
  const rng = new Rng(streamSeed(seed, pair.index, 2));
  const swapped: string[] = [];
  for (let i = 0; i < swappedPerRow; i++) swapped.push(swappedCaption(pair.scene, rng));
  return {
    key: pair.key,
    file,
    caption: pair.caption,
    web_text: pair.webText,
    label: pair.label,
    scene: pair.scene,
    captions: captionVariants(pair.scene),
    paraphrases: paraphrases(pair.scene),
    swapped,
  };
}

/**
 * Writes `images/<key>.<ext>` and `pairs.jsonl` (one ExportRow per line, in index order) plus
 * `meta.json`. pairs.jsonl is written last, through a rename, so a folder with it is complete.
 */
export async function exportDemoData(options: ExportOptions): Promise<{ rows: number; dir: string }> {
  const mix = { ...DEFAULT_MIX, ...options.mix };
  const ext = options.format === 'png' ? 'png' : 'jpg';
  const imagesDir = join(options.outDir, 'images');
  await mkdir(imagesDir, { recursive: true });
  const rows: ExportRow[] = new Array(options.n);
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < options.n) {
      const i = next++;
      const pair = generateDemoPair(options.seed, i, mix);
      const file = `images/${pair.key}.${ext}`;
      const bytes = await renderScene(pair.scene, { size: options.size, format: options.format, quality: options.quality });
      await writeFile(join(options.outDir, file), bytes);
      rows[i] = exportRow(pair, file, options.seed, options.swappedPerRow);
      done++;
      options.onProgress?.(done, options.n);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 4) }, worker));
  const meta = { seed: options.seed, n: options.n, size: options.size, format: options.format, quality: options.quality, mix };
  await writeFile(join(options.outDir, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
  const tmp = join(options.outDir, 'pairs.jsonl.tmp');
  await writeFile(tmp, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  await rename(tmp, join(options.outDir, 'pairs.jsonl'));
  return { rows: options.n, dir: options.outDir };
}
