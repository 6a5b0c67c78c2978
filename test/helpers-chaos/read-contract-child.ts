import { createInterface } from 'node:readline';
import { isCapfiltError } from '../../src/errors.ts';
import { countRows, readRows, type ReaderOptions } from '../../src/io/readers/index.ts';

/**
 * Child process for reader checks that may hang: reads one file path per stdin line and prints
 * one JSON line per file — the counted rows, the rows read, and whether each error was coded —
 * so the parent can stop it when a file takes too long.
 */
const OPTIONS: Partial<ReaderOptions> = { saveAdditionalColumns: ['extra'], maxCaptionBytes: 64, maxRecordBytes: 256 };

async function check(path: string) {
  let count: number | null = null;
  let countError: string | null = null;
  try {
    count = await countRows(path, OPTIONS);
  } catch (e) {
    countError = isCapfiltError(e) ? e.code : `UNCODED ${String(e)}`;
  }
  let read = 0;
  let readError: string | null = null;
  try {
    for await (const _ of readRows(path, OPTIONS)) read++;
  } catch (e) {
    readError = isCapfiltError(e) ? e.code : `UNCODED ${String(e)}`;
  }
  return { count, countError, read, readError };
}

for await (const line of createInterface({ input: process.stdin })) {
  process.stdout.write(`${JSON.stringify(await check(line))}\n`);
}
