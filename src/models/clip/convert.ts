import { CapfiltError } from '../../core/errors.ts';
import { writeConvertedFolder, type Manifest } from '../runtime/manifest.ts';
import type { RuntimeOptions } from '../runtime/types.ts';
import { CheckedWeights, openWeightFolder, weightFileOf } from '../runtime/weights/source.ts';
import { CLIP_ARCHITECTURE, loadClipConfig, loadClipPreprocessor } from './config.ts';
import { buildClipGraphs } from './graphs.ts';
import { CLIP_MANIFEST_FORMAT, clipLayerOptions } from './loader.ts';
import { LOGIT_SCALE, expectedWeights } from './names.ts';

/**
 * `capfilt models convert` for a CLIPModel folder: vision.onnx and text.onnx (+ external data),
 * config.json, preprocessor_config.json, the tokenizer files, and a manifest that also records
 * logit_scale (a weight no graph needs: cosines are scaled in the caller).
 */

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt', 'special_tokens_map.json'];

export async function convertClip(inDir: string, outDir: string, precision: RuntimeOptions['precision'] = 'fp32', weightsFile?: string): Promise<Manifest> {
  if (precision === 'fp16') throw new CapfiltError('MODEL_UNSUPPORTED', 'precision fp16: this runtime builds fp32 and int8 graphs only');
  const cfg = loadClipConfig(inDir);
  const pre = loadClipPreprocessor(inDir, cfg.vision.imageSize);
  const weightFile = weightFileOf(inDir, weightsFile).file;
  const weights = new CheckedWeights(openWeightFolder(inDir, weightFile), expectedWeights(cfg));
  try {
    const logitScale = weights.get(LOGIT_SCALE).data[0];
    return await writeConvertedFolder({
      inDir,
      outDir,
      weightFile,
      format: CLIP_MANIFEST_FORMAT,
      architecture: CLIP_ARCHITECTURE,
      precision,
      graphs: buildClipGraphs(cfg, weights, clipLayerOptions(precision)),
      copyFiles: ['preprocessor_config.json', ...TOKENIZER_FILES],
      defaults: { 'preprocessor_config.json': pre.raw },
      weightDtypes: () => weights.sourceDtypes(),
      config: cfg.raw,
      extra: () => ({ logitScale }),
    });
  } finally {
    weights.close();
  }
}
