import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CapfiltError } from '../core/errors.ts';
import { isClipConfig } from './clip/config.ts';
import { readJson } from './runtime/config-files.ts';
import { openInferenceThread, type InferenceThread } from './runtime/inference/client.ts';
import type { RuntimeOptions } from './runtime/types.ts';

/**
 * The family registry: which model family a folder holds (from its config.json, or for BLIP a
 * folder holding captioner/ and filter/), and the module that serves it inside an inference
 * thread. Adding a family = its folder under src/models/ with a serve.ts + one entry here.
 */
export const FAMILIES = {
  blip: {
    serve: new URL('./blip/serve.ts', import.meta.url).href,
    holds: (dir: string) => existsSync(join(dir, 'captioner', 'config.json')) || existsSync(join(dir, 'filter', 'config.json')) || isBlipConfig(configOf(dir)),
  },
  clip: {
    serve: new URL('./clip/serve.ts', import.meta.url).href,
    holds: (dir: string) => isClipConfig(configOf(dir)),
  },
} as const;

export type FamilyName = keyof typeof FAMILIES;

function isBlipConfig(c: Record<string, unknown> | null): boolean {
  return c?.model_type === 'blip' || (Array.isArray(c?.architectures) && c.architectures.some((a) => typeof a === 'string' && a.startsWith('Blip')));
}

function configOf(dir: string): Record<string, unknown> | null {
  const file = join(dir, 'config.json');
  return existsSync(file) ? (readJson(file) as Record<string, unknown>) : null;
}

export function familyOf(dir: string): FamilyName {
  for (const [name, f] of Object.entries(FAMILIES)) if (f.holds(dir)) return name as FamilyName;
  throw new CapfiltError('MODEL_DIR_INVALID', `${dir}: no model family recognises this folder (expected a BLIP or CLIP config.json, or captioner/ and filter/ folders)`, { dir });
}

/** The folder's models in their own inference thread. */
export async function openThreaded(dir: string, runtime: RuntimeOptions): Promise<InferenceThread> {
  return openInferenceThread(FAMILIES[familyOf(dir)].serve, dir, runtime);
}
