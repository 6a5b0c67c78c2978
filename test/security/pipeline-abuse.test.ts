import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readShardParquet } from '../../src/io/writers/shard-parquet.ts';
import { runPipeline } from '../../src/run/run.ts';
import { logger } from '../../src/core/logger.ts';
import { WorkerHost } from '../../src/workers/host.ts';
import { testConfig } from '../helpers/config.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../helpers/redis-cleanup.ts';
import { readTarEntries } from '../../src/io/writers/tar.ts';

/**
 * Attacks through the pipeline's own doors, on real Redis and a real loopback server:
 * SSRF by every route (address literals in all spellings, a redirect hop, a DNS name that
 * resolves to loopback), path traversal through column names, values and input file names
 * into output names, and crafted BullMQ jobs (huge, malformed, traversal ids) written straight
 * into Redis.
 */
const log = logger().child({ test: 'security-pipeline' });
const dir = mkdtempSync(join(tmpdir(), 'capfilt-sec-'));
const prefixes: string[] = [];
let server: Server;
let base: string;
let port: number;
const hits: string[] = [];

beforeAll(async () => {
  const jpeg = await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 250, g: 10, b: 10 } } }).jpeg().toBuffer();
  server = createServer((req, res) => {
    hits.push(req.url ?? '');
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/redirect') return void res.writeHead(302, { location: u.searchParams.get('to') ?? '/' }).end();
    res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': String(jpeg.length) }).end(jpeg);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  for (const p of prefixes) await deletePrefix(p);
  rmSync(dir, { recursive: true, force: true });
});

async function run(name: string, input: string, overrides: Record<string, unknown>) {
  const prefix = uniquePrefix(`sec-${name}`);
  prefixes.push(prefix);
  const out = join(dir, `out-${name}`);
  const loaded = testConfig({
    'redis.prefix': prefix, 'input.path': input, 'output.dir': out, 'shards.rows': 10, 'pipeline.stages': 'download,write',
    'download.retries': 0, 'download.timeoutMs': 3000, 'download.connectTimeoutMs': 1000, 'image.size': 32, ...overrides,
  }, { REDIS_URL });
  const summary = await runPipeline({ loaded, workers: true, progress: 'none', log });
  const files = readdirSync(out).filter((f) => f.endsWith('.parquet')).sort();
  const rows = (await Promise.all(files.map((f) => readShardParquet(join(out, f))))).flat().sort((a, b) => a.rowIndex - b.rowIndex);
  return { summary, rows, out, prefix };
}

describe('SSRF through the download stage (guard on, only the name "localhost" allowlisted)', () => {
  it('refuses every route to loopback, link-local and private addresses, without a request reaching the server', async () => {
    const p = () => `:${port}/img`;
    const attacks: [string, string][] = [
      ['direct IPv4 loopback', `http://127.0.0.1${p()}/1.jpg`],
      ['IPv4 loopback elsewhere in 127/8', `http://127.1.2.3${p()}/2.jpg`],
      ['IPv6 loopback', `http://[::1]${p()}/3.jpg`],
      ['IPv4-mapped IPv6 loopback', `http://[::ffff:127.0.0.1]${p()}/4.jpg`],
      ['decimal integer host', `http://2130706433${p()}/5.jpg`],
      ['hex host', `http://0x7f000001${p()}/6.jpg`],
      ['octal host', `http://0177.0.0.1${p()}/7.jpg`],
      ['unspecified 0.0.0.0', `http://0.0.0.0${p()}/8.jpg`],
      ['cloud metadata', 'http://169.254.169.254/latest/meta-data/iam'],
      ['private 10/8', 'http://10.0.0.1/a.jpg'],
      ['private 192.168/16', 'http://192.168.0.1/a.jpg'],
      ['DNS name resolving to loopback (/etc/hosts)', `http://vm${p()}/9.jpg`],
      ['redirect hop from an allowlisted name to a loopback address', `http://localhost:${port}/redirect?to=${encodeURIComponent(`${base}/img/10.jpg`)}`],
      ['redirect hop to the metadata address', `http://localhost:${port}/redirect?to=${encodeURIComponent('http://169.254.169.254/latest/')}`],
      ['redirect to a non-http scheme', `http://localhost:${port}/redirect?to=${encodeURIComponent('file:///etc/passwd')}`],
    ];
    const control = `http://localhost:${port}/img/ok.jpg`;
    const input = join(dir, 'ssrf.jsonl');
    writeFileSync(input, [...attacks.map(([caption, url]) => ({ url, caption })), { url: control, caption: 'control' }].map((o) => JSON.stringify(o)).join('\n'));
    hits.length = 0;
    const { summary, rows } = await run('ssrf', input, { 'download.ssrfAllowlist': 'localhost' });
    expect(summary).toMatchObject({ status: 'done', reconciled: true, rows: attacks.length + 1, kept: 1 });
    for (const [i, [name]] of attacks.entries()) {
      expect(rows[i].status, name).toBe('failed');
      expect(['DOWNLOAD_BLOCKED_ADDRESS', 'DOWNLOAD_REDIRECT_INVALID'], `${name}: ${rows[i].reason} ${rows[i].reasonDetail}`).toContain(rows[i].reason);
    }
    expect(rows[attacks.length].status).toBe('kept');
    // Only the control image and the three redirecting hops (served to the allowlisted name) were requested.
    expect(hits.filter((h) => h.startsWith('/img/')).sort()).toEqual(['/img/ok.jpg']);
    expect(hits.filter((h) => h.startsWith('/redirect'))).toHaveLength(3);
  });
});

describe('path traversal into output names', () => {
  it('hostile column names, values and an input file name never name an output file, and the values survive', async () => {
    const inDir = join(dir, 'traversal-in');
    const evilName = join(inDir, 'evil ..%2f..%2fx $(touch pwned) ;.csv');
    const cols = ['../../x', '__proto__', 'constructor', 'key', '/etc/passwd', 'a\u0000b'];
    const esc = (s: string) => `"${s.replace(/"/g, '""')}"`;
    const lines = [['url', 'caption', ...cols].map(esc).join(',')];
    for (let i = 0; i < 12; i++) lines.push([`${base}/img/t${i}.jpg`, `../../../../tmp/evil${i}`, '../../y', '{"polluted":1}', 'c', '../../k', '/dev/null', 'z'].map(esc).join(','));
    rmSync(inDir, { recursive: true, force: true });
    mkdirSync(inDir);
    writeFileSync(evilName, `${lines.join('\n')}\n`);
    const before = new Set(readdirSync(dir));
    const { summary, rows, out } = await run('traversal', inDir, { 'download.ssrfAllowlist': '127.0.0.1', 'input.saveAdditionalColumns': cols });
    expect(summary).toMatchObject({ status: 'done', reconciled: true, rows: 12, kept: 12 });
    // Nothing appeared next to the output folder, and the output folder holds only shard files.
    expect([...new Set(readdirSync(dir))].filter((f) => !before.has(f))).toEqual(['out-traversal']);
    expect(readdirSync(out).sort()).toEqual(['00000.parquet', '00000.tar', '00000_stats.json', '00001.parquet', '00001.tar', '00001_stats.json', 'report.html', 'run.json']);
    for (const r of rows) {
      expect(r.key).toMatch(/^\d{9}$/);
      expect(r.text).toMatch(/^\.\.\/\.\.\/\.\.\/\.\.\/tmp\/evil\d+$/);
      // Own properties, compared as entries: a "__proto__" key in an object literal would not be one.
      expect(Object.entries(r.extra).sort()).toEqual([['../../x', '../../y'], ['/etc/passwd', '/dev/null'], ['__proto__', '{"polluted":1}'], ['a\u0000b', 'z'], ['constructor', 'c'], ['key', '../../k']]);
    }
    const tar = await readTarEntries(join(out, '00000.tar'));
    expect([...tar.keys()].every((e) => /^\d{9}\.(jpg|txt|json)$/.test(e))).toBe(true);
    const meta = JSON.parse(tar.get(`${rows[0].key}.json`)!.toString()) as { extra: Record<string, unknown> };
    expect(Object.entries(meta.extra).sort()).toEqual(Object.entries(rows[0].extra).sort());
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('crafted jobs written straight into Redis', () => {
  it('huge, malformed, traversal and unparseable job payloads end failed with a reason; the worker keeps serving', async () => {
    const prefix = uniquePrefix('sec-jobs');
    prefixes.push(prefix);
    const config = testConfig({ 'redis.prefix': prefix, 'output.dir': join(dir, 'out-jobs'), 'pipeline.lockDurationMs': 10_000 }, { REDIS_URL }).config;
    const connection = { url: REDIS_URL };
    const q = new Queue('write', { connection, prefix });
    const crafted = [
      { name: 'huge', data: { runId: 'r'.repeat(64), shardId: 's', padding: 'x'.repeat(20_000_000) } },
      { name: 'missing ids', data: { hello: 'world' } },
      { name: 'wrong types', data: { runId: { $ne: 1 }, shardId: [1, 2, 3] } },
      { name: 'traversal ids', data: { runId: '../../..', shardId: '../../../../etc' } },
      { name: 'null', data: null },
    ];
    for (const c of crafted) await q.add(c.name, c.data as never, { attempts: 1 });
    // Data that is not JSON at all, as only a direct write to Redis could make it.
    const bad = await q.add('not json', { runId: 'x', shardId: 'y' }, { attempts: 1 });
    const redis = new Redis(REDIS_URL);
    await redis.hset(`${prefix}:write:${bad.id}`, 'data', '{"runId": "x", "shardId": ');
    const host = new WorkerHost({ config, stages: ['write'], log });
    await host.start();
    try {
      const t0 = Date.now();
      const failedNames = async () => (await q.getFailed()).map((j) => j.name);
      while ((await failedNames()).length < crafted.length && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 100));
      const failed = await q.getFailed();
      expect(failed.map((j) => j.name).sort()).toEqual(crafted.map((c) => c.name).sort());
      for (const j of failed) {
        expect(j.failedReason, j.name).toMatch(/has no state|is not a safe file name|is not {runId, shardId} strings/);
        expect(j.attemptsMade, j.name).toBeLessThanOrEqual(1);
      }
      // Data that is not JSON cannot become a Job at all: BullMQ reports a worker error and the
      // entry stays in Redis, but the host does not crash and keeps serving the queue.
      await q.add('after', { runId: 'norun', shardId: 'noshard' }, { attempts: 1 });
      while (!(await failedNames()).includes('after') && Date.now() - t0 < 40_000) await new Promise((r) => setTimeout(r, 100));
      expect((await q.getFailed()).find((j) => j.name === 'after')?.failedReason).toMatch(/run norun has no state/);
      expect(readdirSync(dir)).not.toContain('out-jobs');
    } finally {
      await host.close();
      await q.close();
      redis.disconnect();
    }
  });
});
