import { servedRole } from '../roles.ts';
import type { ServedModels } from '../runtime/inference/protocol.ts';
import type { RuntimeOptions } from '../runtime/types.ts';
import { loadBlip } from './index.ts';

/** BLIP inside an inference thread: the captioner and/or the image-text scorer (filter). */
export async function serve(dir: string, runtime: RuntimeOptions): Promise<ServedModels> {
  const m = await loadBlip(dir, runtime);
  const roles: ServedModels['roles'] = {};
  if (m.captioner) roles.captioner = servedRole('captioner', m.captioner);
  if (m.filter) roles.imageTextScorer = servedRole('imageTextScorer', m.filter);
  return {
    info: m.info,
    roles,
    close: async () => {
      await m.captioner?.close();
      await m.filter?.close();
    },
  };
}
