import type { RuntimeOptions } from './types.ts';

/** What `models.precision` may say: a graph precision, or `auto` (the default). */
export type PrecisionSetting = RuntimeOptions['precision'] | 'auto';

export type ModelRole = 'captioner' | 'filter' | 'embedder';

/**
 * `auto` on the CPU is int8 for every role, each where dynamic quantisation agrees with fp32 as
 * the project asks (docs/performance.md): the BLIP filter's ITM keep/drop 100% identical and the
 * CLIP embedder's 99.3% (bench:int8, eval:demo); the captioner's captions identical for 97.7% of
 * images greedy and 100% with the run's nucleus decoding (≥ 97% asked), at 1.5× the captions/s of
 * fp32 at base size on a quiet machine (bench:models -- --int8). The ratios hold with 7-bit
 * weights only: full-range int8 saturates ORT's AVX2 kernels (91% identical captions).
 * On CUDA everything is fp32: int8 dynamic quantisation is a CPU path.
 */
const AUTO_CPU: Record<ModelRole, RuntimeOptions['precision']> = { captioner: 'int8', filter: 'int8', embedder: 'int8' };

export function resolvePrecision(device: string, setting: PrecisionSetting, role: ModelRole): RuntimeOptions['precision'] {
  if (setting !== 'auto') return setting;
  return device === 'cpu' ? AUTO_CPU[role] : 'fp32';
}

/** What `models.spinning` may say. */
export type SpinningSetting = 'auto' | 'on' | 'off';

/**
 * Whether ORT's intra-op threads spin (RuntimeOptions.spinning) in a process whose stages run
 * `concurrentModels` models at the same time. `auto`: spin only when one model has the cores to
 * itself. Measured side by side on a 2-core host (docs/performance.md, "Thread placement"):
 * with caption and filter in one process, not spinning ran the base-size pipeline 4–7% faster (bench:capfilt -- --spinning on,off);
 * a decode step alone ran 8–12% slower without spinning.
 */
export function resolveSpinning(setting: SpinningSetting, concurrentModels: number): boolean {
  if (setting === 'auto') return concurrentModels <= 1;
  return setting === 'on';
}

/** Session options for the model serving each role. */
export type RoleRuntime = (role: ModelRole) => RuntimeOptions;

/** The `models` config section's device, threads and precision (RuntimeOptions, or auto), spinning resolved. */
export interface RuntimeSetting {
  device: string;
  threads: number;
  precision: PrecisionSetting;
  spinning?: boolean;
}

/**
 * The RuntimeSetting of a process whose stages run `concurrentModels` models at once, from the
 * `models` config section (its spinning setting resolved by resolveSpinning).
 */
export function runtimeSetting(models: Omit<RuntimeSetting, 'spinning'> & { spinning: SpinningSetting }, concurrentModels: number): RuntimeSetting {
  return { device: models.device, threads: models.threads, precision: models.precision, spinning: resolveSpinning(models.spinning, concurrentModels) };
}

/** RoleRuntime from the `models` config section. */
export function runtimeFromConfig(models: RuntimeSetting): RoleRuntime {
  return (role) => ({
    device: models.device,
    threads: models.threads,
    precision: resolvePrecision(models.device, models.precision, role),
    ...(models.spinning === undefined ? {} : { spinning: models.spinning }),
  });
}
