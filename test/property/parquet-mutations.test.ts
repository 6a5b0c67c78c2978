import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { OPTIONS, checkContract, dir, file } from '../helpers/reader-contract.ts';
import { VALID_ROWS, mutate, mutationArb, writeValidParquet } from '../helpers/parquet-mutations.ts';

/**
 * Corrupted parquet at the readers' door, property-based and in-process: byte flips, truncations
 * and splices of a valid file give rows — each valid or failed with a catalogued reason, as many
 * as the footer counts — or a coded refusal of the whole file. Decoding runs in the reader's
 * worker thread under a time limit, so a file whose decode never ends (two splices were enough)
 * fails its rows with INPUT_UNREADABLE; here the limit's floor is lowered to keep the suite fast.
 * Each case must end within CASE_LIMIT_MS, or the property fails naming its mutations.
 */
const FLOOR_MS = 1000;
const CASE_LIMIT_MS = FLOOR_MS + 9000;
const RUNS = 500;

describe('parquet reader on mutated files (property)', () => {
  let valid: Uint8Array;
  beforeAll(async () => {
    valid = writeValidParquet(join(dir, 'valid.parquet'));
    expect(await checkContract(join(dir, 'valid.parquet'))).toHaveLength(VALID_ROWS);
  });

  it('byte flips, truncations and splices give rows or a coded error, within the time limit, never a crash or a hang', async () => {
    const o = { ...OPTIONS, parquetDecodeFloorMs: FLOOR_MS };
    let cases = 0;
    let stopped = 0;
    const t0 = Date.now();
    await fc.assert(
      fc.asyncProperty(fc.array(mutationArb, { minLength: 1, maxLength: 4 }), async (mutations) => {
        cases++;
        const path = file('parquet', mutate(valid, mutations));
        let timer: NodeJS.Timeout | undefined;
        const limit = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`reading ${path} did not finish within ${CASE_LIMIT_MS} ms (mutations ${JSON.stringify(mutations)})`)), CASE_LIMIT_MS);
        });
        try {
          const rows = await Promise.race([checkContract(path, o), limit]);
          if (rows?.some((r) => /did not finish within/.test(r.invalid?.detail ?? ''))) stopped++;
        } finally {
          clearTimeout(timer);
        }
      }),
      // A failing case is reported as found: shrinking would repeat cases that wait out the limit.
      { numRuns: RUNS, endOnFailure: true },
    );
    console.info(`parquet mutations: ${cases} cases, ${stopped} stopped by the decode time limit, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    // About 10 s on a lightly loaded 2-core machine; the margin is for a busy one.
  }, 120_000);
});
