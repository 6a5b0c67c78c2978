import { writeFileSync } from 'node:fs';

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
