import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar-stream';
import { readShardParquet } from '../../src/io/writers/shard-parquet.ts';
import type { RowRecord } from '../../src/core/records.ts';

/**
 * Reads an output folder back the way a consumer would and checks the run's promise: every
 * input row in exactly one parquet row, every tar a valid archive whose samples are exactly the
 * shard's kept rows (filtered/NNNNN.tar: its filtered rows with an image), each sample with its
 * image, txt and json. Returns figures for the summary line instead of throwing, so a scenario
 * can report "lost 3" rather than stop at the first problem.
 */
export interface OutputCheck {
  rows: number;
  lost: number;
  duplicates: number;
  shards: number;
  tars: number;
  tarProblems: string[];
  records: RowRecord[];
}

async function tarEntries(path: string): Promise<{ names: string[]; problem: string | null }> {
  const names: string[] = [];
  const extract = tar.extract();
  try {
    const done = (async () => {
      for await (const entry of extract) {
        let size = 0;
        for await (const c of entry) size += (c as Buffer).length;
        if (size !== entry.header.size) throw new Error(`${entry.header.name}: ${size} bytes read, header says ${entry.header.size}`);
        names.push(entry.header.name);
      }
    })();
    extract.end(readFileSync(path));
    await done;
    return { names, problem: null };
  } catch (e) {
    return { names, problem: `${path}: ${(e as Error).message}` };
  }
}

function samplesOf(names: string[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const n of names) {
    const dot = n.indexOf('.');
    const key = n.slice(0, dot);
    m.set(key, [...(m.get(key) ?? []), n.slice(dot + 1)]);
  }
  return m;
}

export async function checkOutput(out: string, totalRows: number): Promise<OutputCheck> {
  const parquets = readdirSync(out).filter((f) => /^\d+\.parquet$/.test(f)).sort();
  const records: RowRecord[] = [];
  const tarProblems: string[] = [];
  let tars = 0;
  for (const p of parquets) {
    const name = p.replace('.parquet', '');
    const rows = await readShardParquet(join(out, p));
    records.push(...rows);
    for (const [path, status] of [[join(out, `${name}.tar`), 'kept'], [join(out, 'filtered', `${name}.tar`), 'filtered']] as const) {
      const expected = rows.filter((r) => r.status === status && r.image).map((r) => r.key).sort();
      if (!existsSync(path)) {
        if (status === 'kept' || expected.length) tarProblems.push(`${path}: missing`);
        continue;
      }
      tars++;
      const { names, problem } = await tarEntries(path);
      if (problem) tarProblems.push(problem);
      const samples = samplesOf(names);
      const keys = [...samples.keys()].sort();
      if (keys.join() !== expected.join()) tarProblems.push(`${path}: ${keys.length} samples, parquet has ${expected.length} ${status} rows with images`);
      for (const [k, exts] of samples) {
        if (exts.length !== 3 || !exts.includes('txt') || !exts.includes('json')) tarProblems.push(`${path}: sample ${k} has ${exts.join(',')}`);
      }
    }
  }
  const seen = new Map<number, number>();
  for (const r of records) seen.set(r.rowIndex, (seen.get(r.rowIndex) ?? 0) + 1);
  let lost = 0;
  for (let i = 0; i < totalRows; i++) if (!seen.has(i)) lost++;
  const duplicates = [...seen.values()].reduce((n, c) => n + (c - 1), 0) + (records.length - new Set(records.map((r) => r.key)).size);
  return { rows: records.length, lost, duplicates, shards: parquets.length, tars, tarProblems, records };
}
