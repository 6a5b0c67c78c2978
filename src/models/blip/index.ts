import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CapfiltError } from '../../core/errors.ts';
import { BlipCaptioner } from './captioner.ts';
import { loadBlipConfig } from './config.ts';
import { BlipFilter } from './filter.ts';
import { loadModel, releaseModel, type LoadedModel } from './loader.ts';
import type { BlipModels } from './types.ts';
import type { RuntimeOptions } from '../runtime/types.ts';

/**
 * Entry point of the BLIP runtime. `dir` holds `captioner/` and/or `filter/` (Hugging Face
 * folders or converted ones), or is itself one model folder (its `architectures` decides the
 * role).
 */
export async function loadBlip(dir: string, options: RuntimeOptions): Promise<BlipModels> {
  const roles: { captioner?: string; filter?: string } = {};
  if (existsSync(join(dir, 'config.json'))) {
    const arch = loadBlipConfig(dir).architecture;
    roles[arch === 'BlipForConditionalGeneration' ? 'captioner' : 'filter'] = dir;
  } else {
    for (const role of ['captioner', 'filter'] as const) {
      if (existsSync(join(dir, role, 'config.json'))) roles[role] = join(dir, role);
    }
  }
  if (!roles.captioner && !roles.filter) {
    throw new CapfiltError('MODEL_DIR_INVALID', `${dir}: no BLIP model here (expected config.json, or captioner/ and filter/ folders)`, { dir });
  }
  const loaded: LoadedModel[] = [];
  try {
    const cap = roles.captioner ? await loadModel(roles.captioner, options) : null;
    if (cap) loaded.push(cap);
    const fil = roles.filter ? await loadModel(roles.filter, options) : null;
    if (fil) loaded.push(fil);
    if (cap && cap.cfg.architecture !== 'BlipForConditionalGeneration') {
      throw new CapfiltError('MODEL_DIR_INVALID', `${cap.dir}: captioner/ holds a ${cap.cfg.architecture}`, { dir: cap.dir });
    }
    if (fil && fil.cfg.architecture !== 'BlipForImageTextRetrieval') {
      throw new CapfiltError('MODEL_DIR_INVALID', `${fil.dir}: filter/ holds a ${fil.cfg.architecture}`, { dir: fil.dir });
    }
    return {
      captioner: cap ? new BlipCaptioner(cap) : null,
      filter: fil ? new BlipFilter(fil) : null,
      info: { captioner: cap?.info ?? null, filter: fil?.info ?? null },
    };
  } catch (e) {
    await Promise.all(loaded.map(releaseModel));
    throw e;
  }
}

export type { BlipModels } from './types.ts';
export type { RuntimeOptions } from '../runtime/types.ts';
