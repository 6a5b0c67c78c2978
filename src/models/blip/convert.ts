import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CapfiltError } from '../../core/errors.ts';
import { writeConvertedFolder, type Manifest } from '../runtime/manifest.ts';
import type { RuntimeOptions } from '../runtime/types.ts';
import { CheckedWeights, openWeightFolder, weightFileOf } from '../runtime/weights/source.ts';
import { loadBlipConfig, loadPreprocessorConfig, type BlipArchitecture } from './config.ts';
import { buildGraphs, layerOptions } from './graphs.ts';
import { MANIFEST_FORMAT } from './loader.ts';
import { expectedWeights } from './weights/names.ts';

/**
 * `capfilt models convert`: Hugging Face BLIP folder(s) → converted folder(s) holding the ONNX
 * graphs with external data, config.json, preprocessor_config.json, the tokenizer files and a
 * manifest (source file sha256s, config, precision). Each model is written to a temporary
 * sibling folder and renamed into place, so a folder is never half-written.
 */

export const ROLE_OF: Record<BlipArchitecture, 'captioner' | 'filter'> = {
  BlipForConditionalGeneration: 'captioner',
  BlipForImageTextRetrieval: 'filter',
};

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'vocab.txt', 'special_tokens_map.json', 'added_tokens.json'];

/** Converts one HF folder into `outDir` (created; replaced if it exists). */
export async function convertModel(inDir: string, outDir: string, precision: RuntimeOptions['precision'] = 'fp32', weightsFile?: string): Promise<Manifest> {
  if (precision === 'fp16') throw new CapfiltError('MODEL_UNSUPPORTED', 'precision fp16: this runtime builds fp32 and int8 graphs only');
  const cfg = loadBlipConfig(inDir);
  const pre = loadPreprocessorConfig(inDir, cfg.vision.imageSize);
  const weightFile = weightFileOf(inDir, weightsFile).file;
  const weights = new CheckedWeights(openWeightFolder(inDir, weightFile), expectedWeights(cfg));
  try {
    return await writeConvertedFolder({
      inDir,
      outDir,
      weightFile,
      format: MANIFEST_FORMAT,
      architecture: cfg.architecture,
      precision,
      graphs: buildGraphs(cfg, weights, layerOptions(precision)),
      copyFiles: ['preprocessor_config.json', ...TOKENIZER_FILES],
      defaults: { 'preprocessor_config.json': pre.raw },
      weightDtypes: () => weights.sourceDtypes(),
      config: cfg.raw,
    });
  } finally {
    weights.close();
  }
}

/**
 * Converts `inPath` — one HF folder, or a folder holding `captioner/` and/or `filter/` — into
 * `outDir/captioner` and/or `outDir/filter` (the layout `loadBlip` reads).
 */
export async function convert(inPath: string, outDir: string, precision: RuntimeOptions['precision'] = 'fp32'): Promise<Record<string, Manifest>> {
  const out: Record<string, Manifest> = {};
  if (existsSync(join(inPath, 'config.json'))) {
    const role = ROLE_OF[loadBlipConfig(inPath).architecture];
    out[role] = await convertModel(inPath, join(outDir, role), precision);
    return out;
  }
  const roles = (['captioner', 'filter'] as const).filter((r) => existsSync(join(inPath, r, 'config.json')));
  if (!roles.length) {
    throw new CapfiltError('MODEL_DIR_INVALID', `${inPath}: neither a BLIP folder (config.json) nor a folder holding captioner/ or filter/`, { dir: inPath });
  }
  await mkdir(outDir, { recursive: true });
  for (const role of roles) {
    const arch = loadBlipConfig(join(inPath, role)).architecture;
    if (ROLE_OF[arch] !== role) {
      throw new CapfiltError('MODEL_DIR_INVALID', `${join(inPath, role)}: architecture ${arch} does not belong in ${role}/`, { dir: join(inPath, role) });
    }
    out[role] = await convertModel(join(inPath, role), join(outDir, role), precision);
  }
  return out;
}
