import { servedRole } from '../roles.ts';
import type { ServedModels } from '../runtime/inference/protocol.ts';
import type { RuntimeOptions } from '../runtime/types.ts';
import { loadClip } from './index.ts';

/** CLIP inside an inference thread: the image-text embedder. */
export async function serve(dir: string, runtime: RuntimeOptions): Promise<ServedModels> {
  const { embedder, info } = await loadClip(dir, runtime);
  return { info, roles: { embedder: servedRole('embedder', embedder) }, close: () => embedder.close() };
}
