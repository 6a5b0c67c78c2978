import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect } from 'vitest';
import { ERROR_CODES, isCapfiltError } from '../../src/core/errors.ts';
import { countRows, readRows, type InputRow, type ReaderOptions } from '../../src/io/readers/index.ts';

/**
 * The reader contract shared by the property tests (`npm test`) and the mutated-parquet chaos
 * scenario: a file either yields one row per counted record — valid, or failed with a
 * catalogued reason — or is refused whole with a CapfiltError. Importing this module gives the
 * test file a temporary folder for its inputs, removed after the file's tests.
 */
export const dir = mkdtempSync(join(tmpdir(), 'capfilt-prop-readers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
export const file = (ext: string, data: string | Uint8Array) => {
  const p = join(dir, `f${n++}.${ext}`);
  writeFileSync(p, data);
  return p;
};

export const OPTIONS: Partial<ReaderOptions> = { saveAdditionalColumns: ['extra'], maxCaptionBytes: 64, maxRecordBytes: 256 };

type Outcome = { rows: InputRow[] } | { error: unknown };

export async function readAll(path: string, o: Partial<ReaderOptions>, range?: Parameters<typeof readRows>[2]): Promise<Outcome> {
  const rows: InputRow[] = [];
  try {
    for await (const r of readRows(path, o, range)) rows.push(r);
    return { rows };
  } catch (error) {
    return { error };
  }
}

export function expectCoded(e: unknown): void {
  expect(isCapfiltError(e), `not a CapfiltError: ${(e as Error)?.stack ?? String(e)}`).toBe(true);
}

/** The reader contract on one file; returns the rows when it was readable. */
export async function checkContract(path: string, o: Partial<ReaderOptions> = OPTIONS): Promise<InputRow[] | null> {
  let count: number;
  try {
    count = await countRows(path, o);
  } catch (e) {
    expectCoded(e);
    const r = await readAll(path, o);
    if ('error' in r) expectCoded(r.error);
    return null;
  }
  const r = await readAll(path, o);
  if ('error' in r) {
    expectCoded(r.error);
    return null;
  }
  expect(r.rows.length).toBe(count);
  r.rows.forEach((row, i) => {
    expect(row.rowIndex).toBe(i);
    if (row.invalid) {
      expect(Object.keys(ERROR_CODES)).toContain(row.invalid.code);
      expect(row.invalid.detail.length).toBeGreaterThan(0);
    } else {
      // What the validator promises: the URL parses (WHATWG) with an http(s) scheme; the text is
      // kept as written, so "http:/host/x" (which parses as http://host/x) is valid too.
      expect(['http:', 'https:'], row.url!).toContain(new URL(row.url!).protocol);
      if (row.text !== null) {
        expect(typeof row.text).toBe('string');
        expect(Buffer.byteLength(row.text)).toBeLessThanOrEqual(64);
      }
    }
  });
  return r.rows;
}
