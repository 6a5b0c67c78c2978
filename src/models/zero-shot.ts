import { existsSync, readFileSync } from 'node:fs';
import { CapfiltError } from '../core/errors.ts';
import type { ImageTextEmbedder } from './roles.ts';

/**
 * Zero-shot classification as the CLIP paper does it, over any ImageTextEmbedder: each class name is put into every prompt
 * template, the filled prompts are embedded and normalised, averaged per class and renormalised
 * (the prompt ensemble); an image's class probabilities are softmax(logit_scale · cosine) over
 * the classes. Class embeddings are computed once per label set and reused for every image.
 *
 * Template sets: `simple` ("a photo of a {}."), `imagenet` (the CLIP paper's 80 ImageNet
 * templates, templates/imagenet.txt), or a file with one template per line, each holding `{}`.
 */

export const BUILTIN_TEMPLATES = ['simple', 'imagenet'] as const;

const IMAGENET_FILE = new URL('./templates/imagenet.txt', import.meta.url);

function templateLines(text: string, source: string): string[] {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const bad = lines.find((l) => !l.includes('{}'));
  if (!lines.length) throw new CapfiltError('CONFIG_INVALID', `${source}: no templates`, { source });
  if (bad !== undefined) throw new CapfiltError('CONFIG_INVALID', `${source}: template "${bad}" has no {} for the class name`, { source });
  return lines;
}

/** `simple`, `imagenet`, or the path of a template file. */
export function loadTemplates(spec: string): string[] {
  if (spec === 'simple') return ['a photo of a {}.'];
  if (spec === 'imagenet') return templateLines(readFileSync(IMAGENET_FILE, 'utf8'), 'imagenet templates');
  if (!existsSync(spec)) throw new CapfiltError('CONFIG_INVALID', `templates "${spec}" is neither ${BUILTIN_TEMPLATES.join(' nor ')} nor a readable file`, { templates: spec });
  return templateLines(readFileSync(spec, 'utf8'), spec);
}

/** Class names from a file, one per line (blank lines and `#` comments skipped, duplicates refused). */
export function loadLabels(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CapfiltError('CONFIG_INVALID', `labels file ${file}: cannot be read (${(e as Error).message})`, { file }, { cause: e });
  }
  const labels = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  if (!labels.length) throw new CapfiltError('CONFIG_INVALID', `labels file ${file}: no class names`, { file });
  const seen = new Set<string>();
  for (const l of labels) {
    if (seen.has(l)) throw new CapfiltError('CONFIG_INVALID', `labels file ${file}: "${l}" appears twice`, { file, label: l });
    seen.add(l);
  }
  return labels;
}

function normalize(v: Float32Array): Float32Array {
  let n = 0;
  for (const x of v) n += x * x;
  n = Math.max(Math.sqrt(n), 1e-12);
  return v.map((x) => x / n);
}

export interface ZeroShotClassifier {
  labels: string[];
  /** One normalised embedding per label, in label order. */
  classEmbeddings: Float32Array[];
  logitScale: number;
}

/** The prompt-ensemble class embeddings; all prompts of all classes go through the text tower in one call. */
export async function buildClassifier(embedder: ImageTextEmbedder, labels: string[], templates: string[]): Promise<ZeroShotClassifier> {
  const prompts = labels.flatMap((l) => templates.map((t) => t.replaceAll('{}', l)));
  const emb = await embedder.embedTexts(prompts);
  const classEmbeddings = labels.map((_, c) => {
    const mean = new Float32Array(embedder.dim);
    for (let t = 0; t < templates.length; t++) {
      const e = emb[c * templates.length + t];
      for (let k = 0; k < mean.length; k++) mean[k] += e[k];
    }
    return normalize(mean.map((x) => x / templates.length));
  });
  return { labels, classEmbeddings, logitScale: embedder.logitScale };
}

export interface LabelScore {
  label: string;
  prob: number;
  cosine: number;
}

/** Top-k labels of a normalised image embedding: softmax over every class of logit_scale · cosine. */
export function classify(c: ZeroShotClassifier, image: Float32Array, topK = 5): LabelScore[] {
  const cos = c.classEmbeddings.map((e) => {
    let s = 0;
    for (let k = 0; k < e.length; k++) s += e[k] * image[k];
    return s;
  });
  const logits = cos.map((x) => c.logitScale * x);
  const max = Math.max(...logits);
  const exp = logits.map((x) => Math.exp(x - max));
  const sum = exp.reduce((a, b) => a + b, 0);
  return cos
    .map((cosine, i) => ({ label: c.labels[i], prob: exp[i] / sum, cosine }))
    .sort((a, b) => b.prob - a.prob || a.label.localeCompare(b.label))
    .slice(0, Math.max(1, topK));
}
