import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { CapfiltError } from '../../core/errors.ts';

/**
 * Reading a model folder's JSON files (config.json, preprocessor_config.json, manifest.json)
 * with the same coded errors in every family: an unreadable file is MODEL_DIR_INVALID, bad JSON
 * or a schema violation MODEL_CONFIG_INVALID, each naming the file.
 */
export function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CapfiltError('MODEL_DIR_INVALID', `${file}: cannot be read (${(e as Error).message})`, { file }, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CapfiltError('MODEL_CONFIG_INVALID', `${file}: not valid JSON (${(e as Error).message})`, { file }, { cause: e });
  }
}

export function parseWith<S extends z.ZodType>(schema: S, json: unknown, file: string): z.infer<S> {
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new CapfiltError('MODEL_CONFIG_INVALID', `${file}: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`, { file });
  }
  return parsed.data;
}

/** OpenAI CLIP's image mean/std, the default of BlipImageProcessor and CLIPImageProcessor. */
export const OPENAI_CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const OPENAI_CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];
