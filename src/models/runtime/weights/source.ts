import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { CapfiltError } from '../../../core/errors.ts';
import type { WeightSource, WeightTensor } from '../types.ts';
import { openPytorchBin } from './pickle.ts';
import { openSafetensors } from './safetensors.ts';
import { refuseLfsPointer } from './lfs-pointer.ts';

export type WeightFormat = 'safetensors' | 'pytorch';

/**
 * The checkpoint of a Hugging Face folder, in the order transformers looks for one:
 * model.safetensors, model.safetensors.index.json (sharded), pytorch_model.bin,
 * pytorch_model.bin.index.json. `file` names one explicitly (format from its name). `sharded`:
 * `file` is an index whose `weight_map` names the shard holding each tensor.
 */
export function weightFileOf(dir: string, file?: string): { file: string; format: WeightFormat; sharded: boolean } {
  if (file) {
    if (!existsSync(file)) throw new CapfiltError('MODEL_DIR_INVALID', `${file}: weights file not found`, { file });
    const sharded = file.endsWith('.index.json');
    const name = sharded ? file.slice(0, -'.index.json'.length) : file;
    return { file, format: name.endsWith('.safetensors') ? 'safetensors' : 'pytorch', sharded };
  }
  const candidates: [string, WeightFormat, boolean][] = [
    ['model.safetensors', 'safetensors', false],
    ['model.safetensors.index.json', 'safetensors', true],
    ['pytorch_model.bin', 'pytorch', false],
    ['pytorch_model.bin.index.json', 'pytorch', true],
  ];
  for (const [name, format, sharded] of candidates) {
    if (existsSync(join(dir, name))) return { file: join(dir, name), format, sharded };
  }
  throw new CapfiltError('MODEL_DIR_INVALID', `${dir}: no model.safetensors, pytorch_model.bin or sharded index (*.index.json) found`, { dir });
}

/**
 * The folder's checkpoint files are all there and are not Git LFS pointers, without reading any
 * tensor: the file, or a sharded checkpoint's index (parsed and checked) and every shard it
 * names. For preflight.
 */
export function checkWeightFiles(dir: string): void {
  const { file, sharded } = weightFileOf(dir);
  if (!sharded) {
    refuseLfsPointer(file);
    return;
  }
  const shards = shardFilesOf(file).shards.map((s) => join(dirname(file), s));
  const absent = shards.filter((s) => !existsSync(s)).map((s) => basename(s));
  if (absent.length) throw new CapfiltError('MODEL_DIR_INVALID', `${file}: shard(s) not in ${dirname(file)}: ${listed(absent)}`, { file, missing: absent });
  for (const s of shards) refuseLfsPointer(s);
}

export function openWeightFolder(dir: string, weightsFile?: string): WeightSource {
  const { file, format, sharded } = weightFileOf(dir, weightsFile);
  if (sharded) return openShardedWeights(file, format);
  return format === 'safetensors' ? openSafetensors(file) : openPytorchBin(file);
}

/**
 * A sharded checkpoint's shard file names, from its index (`{"weight_map": {tensor: shard}}`):
 * each must be a plain file name beside the index, so an index cannot point a read elsewhere.
 */
export function shardFilesOf(indexFile: string): { weightMap: Map<string, string>; shards: string[] } {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(indexFile, 'utf8'));
  } catch (e) {
    throw new CapfiltError('MODEL_DIR_INVALID', `${indexFile}: not a readable JSON index (${(e as Error).message})`, { file: indexFile }, { cause: e });
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new CapfiltError('MODEL_DIR_INVALID', `${indexFile}: no "weight_map" object (tensor name → shard file)`, { file: indexFile });
  }
  const weightMap = new Map<string, string>();
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== 'string' || shard === '' || shard !== basename(shard) || shard === '.' || shard === '..' || shard.includes('\\')) {
      throw new CapfiltError('MODEL_DIR_INVALID', `${indexFile}: tensor "${name}" names shard ${JSON.stringify(shard)}, which is not a file name beside the index`, { file: indexFile, tensor: name });
    }
    weightMap.set(name, shard);
  }
  if (weightMap.size === 0) throw new CapfiltError('MODEL_DIR_INVALID', `${indexFile}: "weight_map" lists no tensors`, { file: indexFile });
  return { weightMap, shards: [...new Set(weightMap.values())].sort() };
}

/**
 * The tensors of a sharded checkpoint as one source. The index is authoritative, as in
 * transformers: it lists every tensor and the shard that holds it; opening checks that each
 * shard exists and holds what the index says. Each shard is read as its single-file format is
 * (positioned reads for safetensors; the restricted unpickler for .bin).
 */
export function openShardedWeights(indexFile: string, format: WeightFormat): WeightSource {
  const { weightMap, shards } = shardFilesOf(indexFile);
  const dir = dirname(indexFile);
  const open = new Map<string, WeightSource>();
  const closeAll = (): void => {
    for (const s of open.values()) s.close();
  };
  try {
    for (const shard of shards) {
      const path = join(dir, shard);
      if (!existsSync(path)) throw new CapfiltError('MODEL_DIR_INVALID', `${indexFile}: shard ${shard} is not in ${dir}`, { file: indexFile, shard });
      open.set(shard, format === 'safetensors' ? openSafetensors(path) : openPytorchBin(path));
    }
    const absent = [...weightMap].filter(([name, shard]) => !open.get(shard)!.has(name)).map(([name, shard]) => `${name} (${shard})`);
    if (absent.length) {
      throw new CapfiltError('WEIGHTS_MISSING_KEYS', `${indexFile}: ${absent.length} tensor(s) the index places in a shard that does not hold them: ${listed(absent)}`, { file: indexFile, missing: absent });
    }
  } catch (e) {
    closeAll();
    throw e;
  }
  const sourceOf = (name: string): WeightSource => {
    const shard = weightMap.get(name);
    if (shard === undefined) throw new CapfiltError('WEIGHTS_MISSING_KEYS', `${indexFile}: no tensor "${name}"`, { file: indexFile, missing: [name] });
    return open.get(shard)!;
  };
  return {
    file: indexFile,
    keys: () => [...weightMap.keys()],
    has: (name) => weightMap.has(name),
    shape: (name) => sourceOf(name).shape(name),
    get: (name) => sourceOf(name).get(name),
    close: closeAll,
  };
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
