import type { Captioner, ImageTextScorer } from '../roles.ts';

/** What `loadBlip(dir, options)` in src/models/blip/index.ts returns. */
export interface BlipModels {
  captioner: Captioner | null;
  filter: ImageTextScorer | null;
  /** Model ids and file hashes for run.json. */
  info: { captioner: Record<string, unknown> | null; filter: Record<string, unknown> | null };
}
