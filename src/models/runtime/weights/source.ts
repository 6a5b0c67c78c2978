import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CapfiltError } from '../../../core/errors.ts';
import type { WeightSource, WeightTensor } from '../types.ts';
import { openPytorchBin } from './pickle.ts';
import { openSafetensors } from './safetensors.ts';

/**
 * The checkpoint file of a Hugging Face folder: model.safetensors preferred, else
 * pytorch_model.bin; `file` names one explicitly (format from its extension).
 */
export function weightFileOf(dir: string, file?: string): { file: string; format: 'safetensors' | 'pytorch' } {
  if (file) {
    if (!existsSync(file)) throw new CapfiltError('MODEL_DIR_INVALID', `${file}: weights file not found`, { file });
    return { file, format: file.endsWith('.safetensors') ? 'safetensors' : 'pytorch' };
  }
  const st = join(dir, 'model.safetensors');
  if (existsSync(st)) return { file: st, format: 'safetensors' };
  const bin = join(dir, 'pytorch_model.bin');
  if (existsSync(bin)) return { file: bin, format: 'pytorch' };
  throw new CapfiltError('MODEL_DIR_INVALID', `${dir}: neither model.safetensors nor pytorch_model.bin found`, { dir });
}

export function openWeightFolder(dir: string, weightsFile?: string): WeightSource {
  const { file, format } = weightFileOf(dir, weightsFile);
  return format === 'safetensors' ? openSafetensors(file) : openPytorchBin(file);
}

/**
 * What a model needs from a checkpoint, as its family derives it from config.json: every
 * state-dict name with its shape, the names that may stand in for an absent one (HF's tied and
 * aliased parameters) and the stored names the model knows but does not read.
 */
export interface ExpectedWeights {
  shapes: Map<string, number[]>;
  /** name → stored names tried in order when `name` itself is absent. */
  fallbacks: Record<string, string[]>;
  ignorable(name: string): boolean;
}

/** Non-persistent buffers HF sometimes saves (`position_ids`) are never needed: they are arange. */
export function isPositionIdsBuffer(name: string): boolean {
  return /(^|\.)position_ids$/.test(name);
}

const LIST_LIMIT = 20;

function listed(names: string[]): string {
  const head = names.slice(0, LIST_LIMIT).join(', ');
  return names.length > LIST_LIMIT ? `${head}, … (${names.length} in all)` : head;
}

/**
 * A checkpoint checked against the names and shapes a model needs. Construction fails with
 * every missing, unexpected or mis-shaped key listed; `get` then resolves HF's tied weights.
 */
export class CheckedWeights {
  readonly source: WeightSource;
  private readonly resolved = new Map<string, string>();
  private readonly dtypes = new Set<string>();

  constructor(source: WeightSource, expected: ExpectedWeights) {
    this.source = source;
    const file = source.file;
    const missing: string[] = [];
    const misshaped: string[] = [];
    for (const [name, shape] of expected.shapes) {
      const stored = [name, ...(expected.fallbacks[name] ?? [])].find((n) => source.has(n));
      if (!stored) {
        missing.push(name);
        continue;
      }
      const got = source.shape(stored);
      const same = got.length === shape.length && got.every((d, i) => d === shape[i]);
      // The class embedding and position embedding are sometimes stored without the leading 1.
      const squeezed = !same && got.join(',') === shape.filter((d, i) => !(i === 0 && d === 1)).join(',');
      if (!same && !squeezed) misshaped.push(`${stored} [${got.join(', ')}] (config needs [${shape.join(', ')}])`);
      this.resolved.set(name, stored);
    }
    if (missing.length) {
      throw new CapfiltError('WEIGHTS_MISSING_KEYS', `${file}: ${missing.length} tensor(s) missing: ${listed(missing)}`, { file, missing });
    }
    const used = new Set(this.resolved.values());
    const unexpected = source.keys().filter((k) => !expected.shapes.has(k) && !used.has(k) && !expected.ignorable(k)).sort();
    if (unexpected.length) {
      throw new CapfiltError('WEIGHTS_UNEXPECTED_KEYS', `${file}: ${unexpected.length} tensor(s) the model does not know: ${listed(unexpected)}`, { file, unexpected });
    }
    if (misshaped.length) {
      throw new CapfiltError('WEIGHTS_TENSOR_INVALID', `${file}: tensor shapes disagree with config.json: ${listed(misshaped)}`, { file, misshaped });
    }
  }

  get(name: string): WeightTensor {
    const stored = this.resolved.get(name);
    if (!stored) throw new CapfiltError('WEIGHTS_MISSING_KEYS', `${this.source.file}: no tensor "${name}"`, { file: this.source.file, missing: [name] });
    const t = this.source.get(stored);
    this.dtypes.add(t.sourceDtype);
    return t;
  }

  /** Dtypes seen so far, for the manifest. */
  sourceDtypes(): string[] {
    return [...this.dtypes].sort();
  }

  close(): void {
    this.source.close();
  }
}
