import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { parquetWriteFile } from 'hyparquet-writer';

/**
 * Mutated parquet files, shared by the property test (`npm test`), the reader's unit test and the
 * chaos scenario: a valid 40-row file (url, caption, extra) and byte flips, truncations and
 * splices of it.
 */
export const VALID_ROWS = 40;

/** Writes the valid file (deterministic: same bytes every time) and returns its bytes. */
export function writeValidParquet(path: string): Uint8Array {
  parquetWriteFile({
    filename: path,
    columnData: [
      { name: 'url', data: Array.from({ length: VALID_ROWS }, (_, i) => (i % 9 === 4 ? 'ftp://x' : `http://a.example/${i}.jpg`)), type: 'STRING' },
      { name: 'caption', data: Array.from({ length: VALID_ROWS }, (_, i) => `caption ${i} ${'w'.repeat(i)}`), type: 'STRING' },
      { name: 'extra', data: Array.from({ length: VALID_ROWS }, (_, i) => i), type: 'INT32' },
    ],
  });
  return new Uint8Array(readFileSync(path));
}

export type Mutation =
  | { kind: 'flip'; at: number; byte: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'splice'; at: number; bytes: Uint8Array | number[] };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
);

/** Applies the mutations in order; positions are taken modulo the current length. */
export function mutate(valid: Uint8Array, mutations: Mutation[]): Uint8Array {
  let b = Uint8Array.from(valid);
  for (const m of mutations) {
    const at = m.at % b.length;
    if (m.kind === 'flip') b[at] = m.byte;
    else if (m.kind === 'truncate') b = b.subarray(0, at);
    else b = Uint8Array.from([...b.subarray(0, at), ...m.bytes, ...b.subarray(at + m.bytes.length)]);
    if (b.length === 0) break;
  }
  return b;
}

/**
 * Found by the mutation property: two small splices after which hyparquet's decode of the
 * caption column never ends (a page that does not advance the reader).
 */
export const HANGING_SPLICES: Mutation[] = [
  { kind: 'splice', at: 1168575108, bytes: [150, 99] },
  { kind: 'splice', at: 1567160057, bytes: [242] },
];
