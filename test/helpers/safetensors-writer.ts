import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSafetensors } from '../../src/models/runtime/weights/safetensors.ts';

/** Test helper: writes a safetensors file; `entries` may override any header field to corrupt it. */
export interface StEntry {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
  /** Replaces the computed data_offsets. */
  offsets?: [number, number];
}

export function writeSafetensors(file: string, entries: Record<string, StEntry>, opts: { truncateBy?: number; headerLength?: bigint } = {}): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const [name, e] of Object.entries(entries)) {
    header[name] = { dtype: e.dtype, shape: e.shape, data_offsets: e.offsets ?? [offset, offset + e.bytes.byteLength] };
    blobs.push(e.bytes);
    offset += e.bytes.byteLength;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8) json += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(opts.headerLength ?? BigInt(json.length));
  const all = Buffer.concat([len, Buffer.from(json), ...blobs]);
  writeFileSync(file, all.subarray(0, all.length - (opts.truncateBy ?? 0)));
}

export const f32Bytes = (values: number[]): Uint8Array => new Uint8Array(Float32Array.from(values).buffer);

/** HF's shard file name: model-00001-of-00003.safetensors. */
export const shardName = (k: number, n: number): string => `model-${String(k + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;

/**
 * Writes `entries` as a sharded checkpoint in `dir`, as transformers' save_pretrained does:
 * `shards` safetensors files (tensors dealt out in order) and model.safetensors.index.json
 * mapping each tensor to its shard. Returns that weight map.
 */
export function writeShardedSafetensors(dir: string, entries: Map<string, StEntry>, shards: number): Record<string, string> {
  const names = [...entries.keys()];
  const per = Math.ceil(names.length / shards);
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let k = 0; k < shards; k++) {
    const part = names.slice(k * per, (k + 1) * per);
    writeSafetensors(join(dir, shardName(k, shards)), Object.fromEntries(part.map((n) => [n, entries.get(n)!])));
    for (const n of part) {
      weightMap[n] = shardName(k, shards);
      total += entries.get(n)!.bytes.byteLength;
    }
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  return weightMap;
}

/** Every tensor of a safetensors file as writer entries (each dtype widened to float32, as the reader gives it). */
export function readEntries(file: string): Map<string, StEntry> {
  const st = openSafetensors(file);
  const m = new Map<string, StEntry>();
  for (const k of st.keys().sort()) {
    const t = st.get(k);
    m.set(k, { dtype: 'F32', shape: t.shape, bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) });
  }
  st.close();
  return m;
}
