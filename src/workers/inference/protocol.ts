import type { BlipModels } from '../../models/blip/types.ts';
import type { GenerationOptions } from '../../models/runtime/generation/types.ts';
import type { ImageInput, RuntimeOptions } from '../../models/runtime/types.ts';

/** Messages between the main thread (client.ts) and the inference thread (thread.ts). */
export interface ThreadInit {
  entry: string;
  dir: string;
  runtime: RuntimeOptions;
}

export type ThreadRequest =
  | { id: number; op: 'caption'; images: ImageInput[]; options: GenerationOptions }
  | { id: number; op: 'score'; items: { image: ImageInput; texts: string[] }[] }
  | { id: number; op: 'close' };

export interface ThreadError {
  code: string;
  message: string;
  details: Record<string, unknown>;
}

export type ThreadReply =
  | { type: 'ready'; info: BlipModels['info']; captioner: boolean; filter: boolean }
  | { type: 'failed'; error: ThreadError }
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id: number; error: ThreadError };
