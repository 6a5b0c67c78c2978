import type { RuntimeOptions } from './types.ts';

/** What `models.precision` may say: a graph precision, or `auto` (the default). */
export type PrecisionSetting = RuntimeOptions['precision'] | 'auto';

export type ModelRole = 'captioner' | 'filter' | 'embedder';

/**
 * `auto` per role on the CPU: int8 where dynamic quantisation agreed with fp32 on ≥ 99% of
 * decisions in bench:int8 / eval-clip (the BLIP filter's ITM keep/drop, the CLIP embedder's
 * keep/drop) at 1.5–3× the speed of fp32; fp32 for the captioner: its greedy captions were
 * identical for 91% of images with full-range int8 weights, 97.7% since they are 7-bit, and its
 * int8 speed-up has not been re-measured on a quiet machine since (docs/performance.md).
 * On CUDA everything is fp32: int8 dynamic quantisation is a CPU path.
 */
const AUTO_CPU: Record<ModelRole, RuntimeOptions['precision']> = { captioner: 'fp32', filter: 'int8', embedder: 'int8' };

export function resolvePrecision(device: string, setting: PrecisionSetting, role: ModelRole): RuntimeOptions['precision'] {
  if (setting !== 'auto') return setting;
  return device === 'cpu' ? AUTO_CPU[role] : 'fp32';
}

/** Session options for the model serving each role. */
export type RoleRuntime = (role: ModelRole) => RuntimeOptions;

/** The `models` config section's device, threads and precision (RuntimeOptions, or auto). */
export interface RuntimeSetting {
  device: string;
  threads: number;
  precision: PrecisionSetting;
}

/** RoleRuntime from the `models` config section. */
export function runtimeFromConfig(models: RuntimeSetting): RoleRuntime {
  return (role) => ({ device: models.device, threads: models.threads, precision: resolvePrecision(models.device, models.precision, role) });
}
