import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RowRecord } from '../../src/core/records.ts';
import { readEmbeddings } from '../../src/io/writers/embeddings.ts';
import { writeRunJson } from '../../src/io/writers/run-json.ts';
import { writeShardFiles } from '../../src/io/writers/shard.ts';
import { readShardParquet } from '../../src/io/writers/shard-parquet.ts';
import { readTarEntries } from '../../src/io/writers/tar.ts';
import { outputColumns } from '../../src/pipeline/stages/table.ts';
import { runCli } from '../helpers/cli.ts';
import { plantedEmbeddings } from '../helpers/planted-embeddings.ts';
import { record, scored } from '../helpers/records-fixture.ts';

/**
 * `capfilt dedup` on a finished output written by our own writers: two shards of kept rows with
 * CLIP embeddings (planted near-duplicates among them, across shards too), plus filtered and
 * failed rows without embeddings.
 */
const dir = mkdtempSync(join(tmpdir(), 'capfilt-dedup-'));
const out = join(dir, 'out');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const DIM = 48;
const ROWS = 90;
const { vectors, planted } = plantedEmbeddings({ rows: ROWS, dim: DIM, centres: 6, every: 5, seed: 11 });
const b64 = (v: Float32Array) => Buffer.from(new Float32Array(v).buffer).toString('base64');
const keyOf = (i: number) => record(i).key;
const images = { get: async (ref: string) => new TextEncoder().encode(`bytes of ${ref}`) };

function keptRow(i: number): RowRecord {
  return { ...scored(i, 0.9, 0.2, 'kept'), clipEmbedding: { image: b64(vectors[i]), text: b64(vectors[(i + 1) % ROWS]) } };
}

/** Every file of a folder with its sha256, to show the source is left as it was. */
function fingerprint(root: string): Record<string, string> {
  const files: Record<string, string> = {};
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else files[p.slice(root.length)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(root);
  return files;
}

const cos = (a: Float32Array, b: Float32Array) => a.reduce((s, x, k) => s + x * b[k], 0);

/** Rows of one planted group share a root: the distinct row the copies were made from. */
const root = (i: number): number => (planted.has(i) ? root(planted.get(i)!) : i);

let before: Record<string, string>;

beforeAll(async () => {
  const shard0 = [...Array.from({ length: 45 }, (_, i) => keptRow(i)), scored(100, 0.2, 0.1, 'filtered'), record(101, { status: 'failed', reason: 'DOWNLOAD_TIMEOUT', reasonDetail: 'headers timeout' })];
  const shard1 = [...Array.from({ length: 45 }, (_, i) => keptRow(45 + i)), record(102, { status: 'failed', reason: 'IMAGE_TOO_SMALL', image: null })];
  await writeShardFiles(shard0, { outDir: out, name: '00000', images, startTime: Date.now(), columns: outputColumns() });
  await writeShardFiles(shard1, { outDir: out, name: '00001', images, startTime: Date.now(), columns: outputColumns() });
  await writeRunJson(out, { runId: 'r-dedup', config: { clip: { saveEmbeddings: true } } });
  before = fingerprint(out);
});

describe('capfilt dedup', () => {
  it('keeps one row of every planted group, filters the others with the kept row they duplicate', async () => {
    const to = join(dir, 'one-cluster');
    const res = await runCli('dedup', out, '--semantic', '0.95', '--to', to, '--clusters', '1', '--json');
    expect(res.code, res.stderr).toBe(0);
    const summary = JSON.parse(res.stdout.trim().split('\n').pop()!);
    const groups = new Map<number, number[]>();
    for (let i = 0; i < ROWS; i++) groups.set(root(i), [...(groups.get(root(i)) ?? []), i]);
    const expectedDrops = [...groups.values()].reduce((s, g) => s + g.length - 1, 0);
    expect(planted.size).toBeGreaterThan(10);
    expect(summary).toMatchObject({ shards: 2, rows: 93, embedded: 90, nearDuplicates: expectedDrops, kept: 90 - expectedDrops, filtered: 1 + expectedDrops, failed: 2, clusters: 1, dim: DIM });

    const rows = [...(await readShardParquet(join(to, '00000.parquet'), outputColumns())), ...(await readShardParquet(join(to, '00001.parquet'), outputColumns()))];
    expect(rows.map((r) => r.key).sort()).toEqual([...Array.from({ length: ROWS }, (_, i) => keyOf(i)), keyOf(100), keyOf(101), keyOf(102)].sort());
    const byKey = new Map(rows.map((r) => [r.key, r]));
    // Rows without embeddings are written as they were.
    expect([byKey.get(keyOf(100))!.reason, byKey.get(keyOf(101))!.reason, byKey.get(keyOf(102))!.reason]).toEqual(['FILTER_NO_TEXT_KEPT', 'DOWNLOAD_TIMEOUT', 'IMAGE_TOO_SMALL']);
    for (const members of groups.values()) {
      const kept = members.filter((i) => byKey.get(keyOf(i))!.status === 'kept');
      expect(kept, `group ${members.join(',')}`).toHaveLength(1);
      for (const i of members.filter((m) => m !== kept[0])) {
        const r = byKey.get(keyOf(i))!;
        expect([r.status, r.reason, r.nearDuplicate?.of]).toEqual(['filtered', 'NEAR_DUPLICATE', keyOf(kept[0])]);
        expect(r.nearDuplicate!.cosine).toBeGreaterThanOrEqual(0.95);
        expect(Math.abs(r.nearDuplicate!.cosine - cos(vectors[i], vectors[kept[0]]))).toBeLessThan(2e-3);
      }
    }
    // Distinct rows are kept (no two distinct fixture rows come near the threshold).
    for (let i = 0; i < ROWS; i++) if (groups.get(i)?.length === 1) expect(byKey.get(keyOf(i))!.status).toBe('kept');

    // A dropped row's image and key.json move to filtered/NNNNN.tar; kept rows stay in NNNNN.tar.
    const dropped = rows.filter((r) => r.reason === 'NEAR_DUPLICATE');
    const filteredTars = new Map([...(await readTarEntries(join(to, 'filtered', '00000.tar'))), ...(await readTarEntries(join(to, 'filtered', '00001.tar')))]);
    const keptTars = new Map([...(await readTarEntries(join(to, '00000.tar'))), ...(await readTarEntries(join(to, '00001.tar')))]);
    for (const r of dropped) {
      const json = JSON.parse(filteredTars.get(`${r.key}.json`)!.toString());
      expect([json.status, json.reason, json.near_duplicate_of]).toEqual(['filtered', 'NEAR_DUPLICATE', r.nearDuplicate!.of]);
      expect(keptTars.has(`${r.key}.jpg`)).toBe(false);
    }
    expect([...keptTars.keys()].filter((k) => k.endsWith('.jpg'))).toHaveLength(90 - expectedDrops);

    // _stats.json: every row counted, the near-duplicates under their reason.
    const stats = [0, 1].map((s) => JSON.parse(readFileSync(join(to, `0000${s}_stats.json`), 'utf8')));
    expect(stats[0].count + stats[1].count).toBe(93);
    expect((stats[0].reasons.NEAR_DUPLICATE ?? 0) + (stats[1].reasons.NEAR_DUPLICATE ?? 0)).toBe(expectedDrops);
    for (const s of stats) expect(s.kept + s.filtered + s.failed).toBe(s.count);

    // The new embeddings hold the kept rows only, with the source's values (image and text).
    const src = [await readEmbeddings(out, '00000', { text: true }), await readEmbeddings(out, '00001', { text: true })];
    for (const [s, name] of ['00000', '00001'].entries()) {
      const e = (await readEmbeddings(to, name, { text: true }))!;
      for (const [i, key] of e.keys.entries()) {
        expect(byKey.get(key)!.status).toBe('kept');
        const j = src[s]!.keys.indexOf(key);
        expect(Array.from(e.image.data.subarray(i * DIM, (i + 1) * DIM))).toEqual(Array.from(src[s]!.image.data.subarray(j * DIM, (j + 1) * DIM)));
        expect(Array.from(e.text!.data.subarray(i * DIM, (i + 1) * DIM))).toEqual(Array.from(src[s]!.text!.data.subarray(j * DIM, (j + 1) * DIM)));
      }
    }
    const embeddedKept = (await Promise.all(['00000', '00001'].map((n) => readEmbeddings(to, n)))).reduce((s, e) => s + e!.keys.length, 0);
    expect(embeddedKept).toBe(90 - expectedDrops);

    const run = JSON.parse(readFileSync(join(to, 'run.json'), 'utf8'));
    expect(run).toMatchObject({ runId: 'r-dedup', rows: 93, kept: 90 - expectedDrops, dedup: { threshold: 0.95, clusters: 1, nearDuplicates: expectedDrops } });
    expect(fingerprint(out)).toEqual(before);
  });

  it('with several clusters, every dropped row names a kept row it reaches', async () => {
    const to = join(dir, 'clusters');
    const res = await runCli('dedup', out, '--semantic', '0.9', '--to', to, '--clusters', '4', '--threads', '1', '--json');
    expect(res.code, res.stderr).toBe(0);
    const summary = JSON.parse(res.stdout.trim().split('\n').pop()!);
    const rows = [...(await readShardParquet(join(to, '00000.parquet'))), ...(await readShardParquet(join(to, '00001.parquet')))];
    const index = new Map(Array.from({ length: ROWS }, (_, i) => [keyOf(i), i]));
    const byKey = new Map(rows.map((r) => [r.key, r]));
    const dropped = rows.filter((r) => r.reason === 'NEAR_DUPLICATE');
    expect(dropped.length).toBe(summary.nearDuplicates);
    expect(dropped.length).toBeGreaterThan(planted.size * 0.8);
    for (const r of dropped) {
      expect(byKey.get(r.nearDuplicate!.of)!.status).toBe('kept');
      expect(cos(vectors[index.get(r.key)!], vectors[index.get(r.nearDuplicate!.of)!])).toBeGreaterThan(0.9 - 2e-3);
    }
    expect(fingerprint(out)).toEqual(before);
  });

  it('refuses bad thresholds, a missing embeddings folder, mixed dimensions and a used --to', async () => {
    for (const t of ['0', '1.5', 'abc']) {
      const res = await runCli('dedup', out, '--semantic', t, '--to', join(dir, 'never'));
      expect(res.code, t).toBe(2);
      expect(res.stderr).toContain('CLI_USAGE: --semantic must be a cosine in (0, 1]');
    }
    const same = await runCli('dedup', out, '--semantic', '0.95', '--to', out);
    expect([same.code, same.stderr]).toEqual([2, expect.stringContaining('CLI_USAGE: dedup writes a new output folder')]);

    const bare = join(dir, 'bare');
    await writeShardFiles([scored(0, 0.9, 0.2, 'kept')], { outDir: bare, name: '00000', images, startTime: Date.now() });
    const none = await runCli('dedup', bare, '--semantic', '0.95', '--to', join(dir, 'bare-to'));
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('EMBEDDINGS_MISSING');
    expect(none.stderr).toContain('--save-embeddings');

    const mixed = join(dir, 'mixed');
    await writeShardFiles([keptRow(0)], { outDir: mixed, name: '00000', images, startTime: Date.now() });
    await writeShardFiles([{ ...keptRow(1), clipEmbedding: { image: b64(new Float32Array(DIM * 2).fill(0.1)), text: null } }], { outDir: mixed, name: '00001', images, startTime: Date.now() });
    const dims = await runCli('dedup', mixed, '--semantic', '0.95', '--to', join(dir, 'mixed-to'));
    expect(dims.code).toBe(1);
    expect(dims.stderr).toContain(`EMBEDDINGS_DIMS_MISMATCH: ${mixed}: shard 00001's image embeddings have ${DIM * 2} dimensions, shard 00000's ${DIM}`);

    const used = await runCli('dedup', out, '--semantic', '0.95', '--to', join(dir, 'one-cluster'));
    expect(used.code).toBe(1);
    expect(used.stderr).toContain('OUTPUT_EXISTS');
    expect(readdirSync(dir).filter((n) => n.endsWith('-to') || n === 'never')).toEqual([]);
  });
});

// The fixture's own sanity: planted rows are near their source, distinct rows far apart.
it('fixture: planted copies reach 0.95, distinct rows stay far below', () => {
  for (const [i, j] of planted) expect(cos(vectors[i], vectors[j])).toBeGreaterThan(0.97);
  const distinct = Array.from({ length: ROWS }, (_, i) => i).filter((i) => !planted.has(i));
  let max = -1;
  for (const a of distinct) for (const b of distinct) if (a < b) max = Math.max(max, cos(vectors[a], vectors[b]));
  expect(max).toBeLessThan(0.9);
});
