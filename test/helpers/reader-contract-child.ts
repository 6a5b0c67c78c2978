import { createInterface } from 'node:readline';
import { isCapfiltError } from '../../src/core/errors.ts';
import { countRows, readRows, type ReaderOptions } from '../../src/io/readers/index.ts';

/**
 * Child process for reader checks that may hang: reads one file path per stdin line and prints
 * one JSON line per file — the counted rows, the rows read (INPUT_UNREADABLE ones, and whether
 * the reader had to stop a decode for time), and whether each error was coded — so the parent
 * can stop it when a file takes too long.
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
  let unreadable = 0;
  let stopped = false;
  let readError: string | null = null;
  try {
    for await (const row of readRows(path, OPTIONS)) {
      read++;
      if (row.invalid?.code === 'INPUT_UNREADABLE') unreadable++;
      if (row.invalid && /did not finish within/.test(row.invalid.detail)) stopped = true;
    }
  } catch (e) {
    readError = isCapfiltError(e) ? e.code : `UNCODED ${String(e)}`;
  }
  return { count, countError, read, unreadable, stopped, readError };
}

for await (const line of createInterface({ input: process.stdin })) {
  process.stdout.write(`${JSON.stringify(await check(line))}\n`);
}
