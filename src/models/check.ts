import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CapfiltError, isCapfiltError } from '../core/errors.ts';
import { ARCHITECTURES, loadBlipConfig } from './blip/config.ts';
import { CLIP_ARCHITECTURE, loadClipConfig } from './clip/config.ts';
import { familyOf } from './families.ts';
import { readJson } from './runtime/config-files.ts';
import { MANIFEST, isConverted } from './runtime/manifest.ts';
import { checkWeightFiles } from './runtime/weights/source.ts';

/**
 * Whether a model folder can serve a role, judged from its files alone (config.json, the weights
 * file's presence, tokenizer files, a converted folder's manifest) in milliseconds, so a run can
 * refuse a wrong folder before it plans, starts workers or loads weights (which takes seconds to
 * minutes). Loading can still fail later on what only the weights show (missing tensors).
 */
export type CheckedRole = 'captioner' | 'imageTextScorer' | 'embedder';

const BLIP_ROLE: Record<'captioner' | 'imageTextScorer', { sub: string; architecture: (typeof ARCHITECTURES)[number] }> = {
  captioner: { sub: 'captioner', architecture: 'BlipForConditionalGeneration' },
  imageTextScorer: { sub: 'filter', architecture: 'BlipForImageTextRetrieval' },
};

export function checkModelFolder(dir: string, role: CheckedRole, option: string): { dir: string; architecture: string } {
  const where = `${option} ${dir}`;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new CapfiltError('MODEL_DIR_INVALID', `${where}: no such folder`, { dir, option });
  const folder = role === 'embedder' ? dir : existsSync(join(dir, BLIP_ROLE[role].sub, 'config.json')) ? join(dir, BLIP_ROLE[role].sub) : dir;
  if (!existsSync(join(folder, 'config.json'))) throw new CapfiltError('MODEL_DIR_INVALID', `${where}: no config.json${folder === dir && role !== 'embedder' ? ` (nor ${BLIP_ROLE[role].sub}/config.json)` : ''}`, { dir, option });
  const family = withOption(where, () => familyOf(folder));
  let architecture: string;
  let tokenizer: boolean;
  if (role === 'embedder') {
    if (family !== 'clip') throw new CapfiltError('MODEL_DIR_INVALID', `${where}: holds a ${family} model, the clip stage needs a CLIPModel`, { dir, option });
    withOption(where, () => loadClipConfig(folder));
    architecture = CLIP_ARCHITECTURE;
    tokenizer = existsSync(join(folder, 'tokenizer.json')) || (existsSync(join(folder, 'vocab.json')) && existsSync(join(folder, 'merges.txt')));
  } else {
    const want = BLIP_ROLE[role].architecture;
    if (family !== 'blip') throw new CapfiltError('MODEL_DIR_INVALID', `${where}: holds a ${family} model, expected ${want}`, { dir, option });
    architecture = withOption(where, () => loadBlipConfig(folder)).architecture;
    if (architecture !== want) throw new CapfiltError('MODEL_DIR_INVALID', `${where}: holds ${architecture}, expected ${want}`, { dir, option, architecture });
    tokenizer = ['tokenizer.json', 'vocab.txt'].some((f) => existsSync(join(folder, f)));
  }
  if (!tokenizer) throw new CapfiltError('TOKENIZER_INVALID', `${where}: no tokenizer files (tokenizer.json${role === 'embedder' ? ', or vocab.json + merges.txt' : ' or vocab.txt'})`, { dir, option });
  if (isConverted(folder)) checkConverted(folder, where);
  else withOption(where, () => checkWeightFiles(folder));
  return { dir: folder, architecture };
}

/** A converted folder: its manifest reads and every graph it lists is there. */
function checkConverted(folder: string, where: string): void {
  let m: { graphs?: Record<string, { model?: string }> };
  try {
    m = readJson(join(folder, MANIFEST)) as typeof m;
  } catch (e) {
    throw new CapfiltError('MODEL_DIR_INVALID', `${where}: ${MANIFEST} cannot be read (${(e as Error).message})`, { dir: folder }, { cause: e });
  }
  const graphs = m && typeof m.graphs === 'object' && m.graphs !== null ? Object.values(m.graphs) : [];
  if (!graphs.length) throw new CapfiltError('MODEL_DIR_INVALID', `${where}: ${MANIFEST} lists no graphs`, { dir: folder });
  const missing = graphs.map((g) => g.model).filter((f) => typeof f !== 'string' || !existsSync(join(folder, f)));
  if (missing.length) throw new CapfiltError('MODEL_DIR_INVALID', `${where}: graph file(s) ${missing.join(', ')} listed in ${MANIFEST} are missing`, { dir: folder });
}

/** Prefixes a coded error from a loader with the option that named the folder. */
function withOption<T>(where: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (isCapfiltError(e)) throw new CapfiltError(e.code, `${where}: ${e.text}`, e.details, { cause: e });
    throw e;
  }
}
