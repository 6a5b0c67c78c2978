/**
 * Mutated parquet files, the long version of test/property/parquet-mutations.test.ts: more cases,
 * the reader's default decode time limit (10 s floor), and each file read in a child process
 * under a watchdog, so that a reader which still hung (in a way its own time limit does not
 * catch) fails this scenario instead of hanging the chaos suite. This property found a one-byte
 * splice that made rows vanish and two splices that made the decode run forever; both are now
 * INPUT_UNREADABLE rows.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HANGING_SPLICES, VALID_ROWS, mutate, mutationArb, writeValidParquet } from '../helpers/parquet-mutations.ts';
import { checkContract, dir, file } from '../helpers/reader-contract.ts';
import { reportFault } from '../helpers/chaos-scenario.ts';

/**
 * Each mutated file is read in a child process (test/helpers/reader-contract-child.ts) under
 * a watchdog well above the reader's own limit (10 s floor for these small row groups).
 */
const CASE_LIMIT_MS = 30_000;
const RUNS = Number(process.env.CHAOS_PARQUET_CASES ?? 1000);
type ChildResult = { count: number | null; countError: string | null; read: number; unreadable: number; stopped: boolean; readError: string | null };
const guarded = (() => {
  let child: ChildProcessWithoutNullStreams | null = null;
  let pending: ((line: string) => void) | null = null;
  const start = () => {
    const c = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../helpers/reader-contract-child.ts', import.meta.url))], { stdio: 'pipe' });
    createInterface({ input: c.stdout }).on('line', (l) => pending?.(l));
    child = c;
    return c;
  };
  return {
    check(path: string): Promise<ChildResult | 'hang'> {
      const c = child ?? start();
      return new Promise((resolve) => {
        const t = setTimeout(() => {
          pending = null;
          c.kill('SIGKILL');
          child = null;
          resolve('hang');
        }, CASE_LIMIT_MS);
        pending = (l) => {
          clearTimeout(t);
          pending = null;
          resolve(JSON.parse(l) as ChildResult);
        };
        c.stdin.write(`${path}\n`);
      });
    },
    stop() {
      child?.kill('SIGKILL');
      child = null;
    },
  };
})();
afterAll(() => guarded.stop());

describe('parquet reader on mutated files (property)', () => {
  let valid: Uint8Array;
  beforeAll(async () => {
    valid = writeValidParquet(join(dir, 'valid.parquet'));
    expect(await checkContract(join(dir, 'valid.parquet'))).toHaveLength(VALID_ROWS);
  });

  it('the file whose decode never ended: every row INPUT_UNREADABLE once the default limit is reached', async () => {
    const c0 = Date.now();
    const r = await guarded.check(file('parquet', mutate(valid, HANGING_SPLICES)));
    const seconds = (Date.now() - c0) / 1000;
    reportFault('parquet hanging decode', {
      rows: VALID_ROWS, ...(r === 'hang' ? { outcome: 'hang' } : { read: r.read, unreadable: r.unreadable, stopped: r.stopped }), seconds: seconds.toFixed(1),
    });
    expect(r).toEqual({ count: VALID_ROWS, countError: null, read: VALID_ROWS, unreadable: VALID_ROWS, stopped: true, readError: null });
  });

  it('byte flips, truncations and splices give rows or a coded error, never a crash or a hang', async () => {
    let cases = 0;
    let hangs = 0;
    let stopped = 0;
    let unreadableRows = 0;
    let refused = 0;
    let longest = 0;
    const t0 = Date.now();
    const report = (outcome: string) =>
      reportFault('parquet mutations', {
        cases, refused_files: refused, unreadable_rows: unreadableRows, decodes_stopped: stopped, longest_case_s: (longest / 1000).toFixed(1), hangs, outcome,
        seconds: Math.round((Date.now() - t0) / 1000),
      });
    await fc.assert(
      fc.asyncProperty(fc.array(mutationArb, { minLength: 1, maxLength: 4 }), async (mutations) => {
        cases++;
        const path = file('parquet', mutate(valid, mutations));
        const c0 = Date.now();
        const r = await guarded.check(path);
        longest = Math.max(longest, Date.now() - c0);
        if (r === 'hang') {
          hangs++;
          throw new Error(`reading ${path} did not finish within ${CASE_LIMIT_MS} ms (mutations ${JSON.stringify(mutations)})`);
        }
        for (const e of [r.countError, r.readError]) if (e) expect(e, path).not.toMatch(/^UNCODED/);
        if (r.countError || r.readError) refused++;
        else expect(r.read, `${path}: rows read vs counted`).toBe(r.count);
        unreadableRows += r.unreadable;
        if (r.stopped) stopped++;
      }),
      // No shrinking: every shrink step of a hanging case would wait out the time limit again.
      { numRuns: RUNS, endOnFailure: true },
    ).then(
      () => report('rows or coded errors only'),
      (e: unknown) => {
        report(`FAILED: ${String((e as Error).message).split('\n').find((l) => l.startsWith('Counterexample')) ?? 'see the test output'}`.replace(/\s+/g, '_'));
        throw e;
      },
    );
  });
});
