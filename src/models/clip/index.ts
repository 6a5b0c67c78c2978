import type { RuntimeOptions } from '../runtime/types.ts';
import { ClipEmbedder, DEFAULT_CLIP_BATCH, type ClipBatchSizes } from './embedder.ts';
import type { ClipGraphName } from './graphs.ts';
import { loadClipModel } from './loader.ts';

/**
 * Entry point of the CLIP runtime: a CLIPModel folder (Hugging Face or converted) as an
 * ImageTextEmbedder. `towers` limits what is loaded (an image-only worker never builds the
 * text tower).
 */
export async function loadClip(dir: string, options: RuntimeOptions, o: { towers?: readonly ClipGraphName[]; batch?: ClipBatchSizes } = {}): Promise<{ embedder: ClipEmbedder; info: Record<string, unknown> }> {
  const model = await loadClipModel(dir, options, o.towers);
  return { embedder: new ClipEmbedder(model, o.batch ?? DEFAULT_CLIP_BATCH), info: model.info };
}

export { cosineMatrix } from './embedder.ts';
export { isClipConfig } from './config.ts';
