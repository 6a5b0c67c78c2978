import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoOutput, type DemoOutput } from '../helpers/demo-output.ts';

/**
 * The output read by tools that share no code with capfilt: the shard parquets by DuckDB, the
 * webdataset tars by Python's tarfile, NNNNN_stats.json against img2dataset's own field names.
 * If capfilt's writer and reader agreed on a mistake, these would still see it.
 */
let demo: DemoOutput;
let db: DuckDBConnection;
const ROWS = 60;

beforeAll(async () => {
  demo = await demoOutput(ROWS, 'readers');
  db = await (await DuckDBInstance.create(':memory:')).connect();
}, 300_000);
afterAll(async () => {
  db?.closeSync();
  await demo?.close();
});

const parquets = () => join(demo.out, '*.parquet');
async function query<T = Record<string, unknown>>(sql: string): Promise<T[]> {
  return (await db.runAndReadAll(sql)).getRowObjectsJson() as T[];
}

describe('the shard parquets, read by DuckDB', () => {
  it('one row per input row, each with a final status and, unless kept, a reason code', async () => {
    const [all] = await query<{ n: string; keys: string; shards: string }>(`SELECT count(*) AS n, count(DISTINCT key) AS keys, count(DISTINCT filename) AS shards FROM read_parquet('${parquets()}', filename = true)`);
    expect(Number(all.n)).toBe(ROWS);
    expect(Number(all.keys)).toBe(ROWS);
    expect(Number(all.shards)).toBe(readdirSync(demo.out).filter((f) => /^\d{5}\.parquet$/.test(f)).length);
    const statuses = await query<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM read_parquet('${parquets()}') GROUP BY status`);
    expect(statuses.map((s) => s.status).sort().every((s) => ['failed', 'filtered', 'kept'].includes(s))).toBe(true);
    expect(statuses.reduce((a, s) => a + Number(s.n), 0)).toBe(ROWS);
    const [bad] = await query<{ n: string }>(`SELECT count(*) AS n FROM read_parquet('${parquets()}') WHERE status <> 'kept' AND (reason IS NULL OR NOT regexp_matches(reason, '^[A-Z][A-Z_]+$'))`);
    expect(Number(bad.n)).toBe(0);
    const [rowIndex] = await query<{ lo: string; hi: string }>(`SELECT min(row_index) AS lo, max(row_index) AS hi FROM read_parquet('${parquets()}')`);
    expect([Number(rowIndex.lo), Number(rowIndex.hi)]).toEqual([0, ROWS - 1]);
  });

  it('score columns with the documented types: lists per text, the web text\'s as doubles', async () => {
    const cols = Object.fromEntries((await query<{ column_name: string; column_type: string }>(`DESCRIBE SELECT * FROM read_parquet('${parquets()}')`)).map((c) => [c.column_name, c.column_type]));
    expect(cols).toMatchObject({
      key: 'VARCHAR', row_index: 'BIGINT', url: 'VARCHAR', text: 'VARCHAR', trusted: 'BOOLEAN', status: 'VARCHAR', reason: 'VARCHAR',
      width: 'INTEGER', height: 'INTEGER', sha256: 'VARCHAR', download_bytes: 'BIGINT',
      captions: 'VARCHAR[]', score_text: 'VARCHAR[]', score_source: 'VARCHAR[]', score_itm: 'DOUBLE[]', score_itc: 'DOUBLE[]', score_clip: 'DOUBLE[]',
      score_kept: 'BOOLEAN[]', score_rejected_by: 'VARCHAR[]', web_itm: 'DOUBLE', web_itc: 'DOUBLE', web_clip: 'DOUBLE', labels: 'VARCHAR[]', label_probs: 'DOUBLE[]', selected: 'VARCHAR',
    });
    // Every per-text list has one entry per scored text; scores lie in their ranges.
    const [m] = await query<{ misaligned: string; itm_out: string; cos_out: string; web_mismatch: string }>(`
      SELECT count(*) FILTER (WHERE len(score_itm) <> len(score_text) OR len(score_itc) <> len(score_text) OR len(score_clip) <> len(score_text) OR len(score_kept) <> len(score_text) OR len(score_rejected_by) <> len(score_text)) AS misaligned,
             count(*) FILTER (WHERE list_min(score_itm) < 0 OR list_max(score_itm) > 1) AS itm_out,
             count(*) FILTER (WHERE list_min(score_itc) < -1 OR list_max(score_itc) > 1 OR list_min(score_clip) < -1 OR list_max(score_clip) > 1) AS cos_out,
             count(*) FILTER (WHERE score_source[1] = 'web' AND web_itm IS DISTINCT FROM score_itm[1]) AS web_mismatch
      FROM read_parquet('${parquets()}') WHERE status <> 'failed'`);
    expect(m).toEqual({ misaligned: '0', itm_out: '0', cos_out: '0', web_mismatch: '0' });
    // A kept row kept at least one text, and its key.txt text is one of them; a filtered row kept none.
    const [d] = await query<{ kept_without: string; filtered_with: string; selected_not_kept: string }>(`
      SELECT count(*) FILTER (WHERE status = 'kept' AND NOT list_bool_or(score_kept)) AS kept_without,
             count(*) FILTER (WHERE status = 'filtered' AND list_bool_or(score_kept)) AS filtered_with,
             count(*) FILTER (WHERE status = 'kept' AND NOT list_contains(list_filter(list_zip(score_text, score_kept), x -> x[2]).apply(x -> x[1]), selected)) AS selected_not_kept
      FROM read_parquet('${parquets()}') WHERE NOT trusted`);
    expect(d).toEqual({ kept_without: '0', filtered_with: '0', selected_not_kept: '0' });
  });
});

/** Reads tars with Python's tarfile and groups their members into webdataset samples (key = name up to the first dot). */
function pythonSamples(tars: string[]): Record<string, Record<string, { exts: string[]; txt: string; json: { key: string; status: string; selected: string | null } }>> {
  const script = `
import json, sys, tarfile
out = {}
for path in sys.argv[1:]:
    samples, order = {}, []
    with tarfile.open(path, mode='r:') as t:
        for m in t.getmembers():
            assert m.isfile(), m.name
            key, ext = m.name.split('.', 1)
            if key not in samples:
                samples[key] = {'exts': []}
                order.append(key)
            data = t.extractfile(m).read()
            samples[key]['exts'].append(ext)
            if ext == 'txt': samples[key]['txt'] = data.decode('utf-8')
            if ext == 'json': samples[key]['json'] = json.loads(data)
    # webdataset reads a sample's files consecutively: each key's members must be adjacent.
    names = [m.name.split('.', 1)[0] for m in tarfile.open(path).getmembers()]
    assert all(names[i] == names[i - 1] or names[i] not in names[:i] for i in range(1, len(names))), path
    out[path] = samples
json.dump(out, sys.stdout)
`;
  const r = spawnSync('python3', ['-c', script, ...tars], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`python3 tarfile: ${r.stderr}`);
  return JSON.parse(r.stdout) as ReturnType<typeof pythonSamples>;
}

describe('the webdataset tars, read by Python\'s tarfile', () => {
  it('NNNNN.tar holds exactly the kept rows, filtered/NNNNN.tar the filtered ones, each as key.jpg/.txt/.json', async () => {
    const shards = readdirSync(demo.out).filter((f) => /^\d{5}\.tar$/.test(f)).map((f) => f.slice(0, 5));
    const filteredDir = join(demo.out, 'filtered');
    const filteredTars = readdirSync(filteredDir).filter((f) => f.endsWith('.tar'));
    expect(filteredTars.length).toBeGreaterThan(0);
    const samples = pythonSamples([...shards.map((s) => join(demo.out, `${s}.tar`)), ...filteredTars.map((f) => join(filteredDir, f))]);
    const rows = await query<{ key: string; status: string; selected: string | null; shard: string; has_image: boolean }>(
      `SELECT key, status, selected, regexp_extract(filename, '(\\d{5})\\.parquet$', 1) AS shard, sha256 IS NOT NULL AS has_image FROM read_parquet('${parquets()}', filename = true)`,
    );
    let kept = 0;
    for (const s of shards) {
      const inTar = samples[join(demo.out, `${s}.tar`)];
      const want = rows.filter((r) => r.shard === s && r.status === 'kept');
      expect(Object.keys(inTar).sort()).toEqual(want.map((r) => r.key).sort());
      for (const r of want) {
        expect(inTar[r.key].exts.sort()).toEqual(['jpg', 'json', 'txt']);
        expect(inTar[r.key].txt).toBe(r.selected);
        expect(inTar[r.key].json).toMatchObject({ key: r.key, status: 'kept', selected: r.selected });
      }
      kept += want.length;
    }
    expect(kept).toBe(rows.filter((r) => r.status === 'kept').length);
    const filteredKeys = filteredTars.flatMap((f) => Object.keys(samples[join(filteredDir, f)]));
    expect(filteredKeys.sort()).toEqual(rows.filter((r) => r.status === 'filtered' && r.has_image).map((r) => r.key).sort());
    for (const f of filteredTars) for (const smp of Object.values(samples[join(filteredDir, f)])) expect(smp.json.status).toBe('filtered');
  });
});

/** The fields img2dataset writes in NNNNN_stats.json (img2dataset/logger.py write_stats) and reads back in its LoggerProcess. */
const IMG2DATASET_STATS = { count: 'number', successes: 'number', failed_to_download: 'number', failed_to_resize: 'number', duration: 'number', start_time: 'number', end_time: 'number', status_dict: 'object' } as const;

describe('NNNNN_stats.json beside img2dataset\'s', () => {
  it('carries img2dataset\'s field names and types, and their sums agree with the parquet', async () => {
    const files = readdirSync(demo.out).filter((f) => /^\d{5}_stats\.json$/.test(f));
    // Python's json, as img2dataset's logger reads them.
    const script = `
import json, sys
print(json.dumps([json.load(open(p)) for p in sys.argv[1:]]))`;
    const r = spawnSync('python3', ['-c', script, ...files.map((f) => join(demo.out, f))], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const stats = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
    for (const s of stats) {
      for (const [field, type] of Object.entries(IMG2DATASET_STATS)) expect(typeof s[field], field).toBe(type);
      const dict = s.status_dict as Record<string, number>;
      expect(Object.values(dict).reduce((a, b) => a + b, 0)).toBe(s.count);
      expect((s.successes as number) + (s.failed_to_download as number) + (s.failed_to_resize as number) + (s.failed_other as number)).toBe(s.count);
      expect(s.duration).toBeCloseTo((s.end_time as number) - (s.start_time as number), 6);
    }
    const [p] = await query<{ n: string; with_image: string }>(`SELECT count(*) AS n, count(*) FILTER (WHERE sha256 IS NOT NULL) AS with_image FROM read_parquet('${parquets()}')`);
    expect(stats.reduce((a, s) => a + (s.count as number), 0)).toBe(Number(p.n));
    expect(stats.reduce((a, s) => a + (s.successes as number), 0)).toBe(Number(p.with_image));
  });
});
