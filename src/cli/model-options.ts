import type { Command } from 'commander';
import { CapfiltError } from '../core/errors.ts';
import type { RuntimeOptions } from '../models/runtime/types.ts';

/** Runtime flags shared by the model commands (caption, score, models info). */
export function addRuntimeOptions(cmd: Command): Command {
  return cmd
    .option('--device <device>', 'cpu or cuda:N', 'cpu')
    .option('--threads <n>', 'CPU intra-op threads (0: ONNX Runtime default)', '0')
    .option('--precision <p>', 'fp32 or int8 (used when building graphs from a Hugging Face folder)', 'fp32');
}

export function numberOption(name: string, value: string, min: number, max: number, integer = false): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new CapfiltError('CLI_USAGE', `--${name} must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}], got "${value}"`, { option: name, value });
  }
  return n;
}

export function runtimeOptions(o: { device: string; threads: string; precision: string }): RuntimeOptions {
  if (!['fp32', 'fp16', 'int8'].includes(o.precision)) {
    throw new CapfiltError('CLI_USAGE', `--precision must be fp32, fp16 or int8, got "${o.precision}"`, { option: 'precision', value: o.precision });
  }
  return { device: o.device, threads: numberOption('threads', o.threads, 0, 1024, true), precision: o.precision as RuntimeOptions['precision'] };
}
