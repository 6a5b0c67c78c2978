import type { Command } from 'commander';
import { resolve } from 'node:path';
import { CapfiltError } from '../core/errors.ts';
import { exportDemoData } from '../demo/export.ts';
import { NOISE_LABELS, type NoiseMix } from '../demo/pairs.ts';

function intOption(name: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new CapfiltError('CLI_USAGE', `--${name} must be an integer in [${min}, ${max}], got "${value}"`, { option: name, value });
  }
  return n;
}

/** "correct=0.4,junk=0.2" → partial mix; unknown labels and non-numbers are usage errors. */
export function parseMix(value: string): Partial<NoiseMix> {
  const mix: Partial<NoiseMix> = {};
  for (const part of value.split(',').filter((p) => p.trim() !== '')) {
    const [label, weight] = part.split('=').map((s) => s.trim());
    const w = Number(weight);
    if (!label || !(NOISE_LABELS as readonly string[]).includes(label) || weight === undefined || !Number.isFinite(w) || w < 0) {
      throw new CapfiltError('CLI_USAGE', `--mix entry "${part}" must be <label>=<weight> with label one of ${NOISE_LABELS.join(', ')} and weight ≥ 0`, { option: 'mix', value });
    }
    mix[label as keyof NoiseMix] = w;
  }
  return mix;
}

export function register(program: Command): void {
  const demoData = program.command('demo-data').description('synthetic demo-domain data (shapes scenes with noisy web texts)');
  demoData
    .command('export')
    .description('write N rendered scenes (images/) and pairs.jsonl with captions, web texts and noise labels')
    .requiredOption('--out <dir>', 'output folder')
    .option('--n <count>', 'number of pairs', '1000')
    .option('--seed <seed>', 'dataset seed', '0')
    .option('--size <px>', 'image side in pixels', '160')
    .option('--format <fmt>', 'jpeg or png', 'jpeg')
    .option('--quality <q>', 'JPEG quality', '90')
    .option('--mix <spec>', 'noise mix, e.g. correct=0.4,mismatched=0.2,swapped=0.2,junk=0.2')
    .option('--swapped-per-row <k>', 'hard-negative captions per row (for training)', '3')
    .action(async (opts: Record<string, string | undefined>) => {
      const format = opts.format;
      if (format !== 'jpeg' && format !== 'png') {
        throw new CapfiltError('CLI_USAGE', `--format must be jpeg or png, got "${format}"`, { option: 'format', value: format });
      }
      const n = intOption('n', opts.n ?? '', 1, 10_000_000);
      const started = Date.now();
      const result = await exportDemoData({
        n,
        seed: intOption('seed', opts.seed ?? '', 0, 0xffffffff),
        outDir: resolve(opts.out ?? ''),
        size: intOption('size', opts.size ?? '', 16, 4096),
        format,
        quality: intOption('quality', opts.quality ?? '', 1, 100),
        mix: opts.mix === undefined ? undefined : parseMix(opts.mix),
        swappedPerRow: intOption('swapped-per-row', opts.swappedPerRow ?? '', 0, 20),
        onProgress: (done, total) => {
          if (done % 5000 === 0 && done < total) process.stderr.write(`demo-data: ${done}/${total}\n`);
        },
      });
      process.stdout.write(`${JSON.stringify({ rows: result.rows, out: result.dir, seconds: (Date.now() - started) / 1000 })}\n`);
    });
}
