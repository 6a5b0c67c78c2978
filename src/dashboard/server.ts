import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { fastifySSE } from '@fastify/sse';
import Fastify, { type FastifyInstance } from 'fastify';
import { realClock, type Clock } from '../core/clock.ts';
import { CapfiltError } from '../core/errors.ts';
import type { RowStatus } from '../core/records.ts';
import type { RedisClient } from '../core/redis.ts';
import { StatsReader, type RunSnapshot, type RunSummary, type WorkerView } from '../telemetry/stats-reader.ts';
import { DEFAULT_PREFIX } from '../telemetry/stats-schema.ts';
import { checkBind, installAuth } from './auth.ts';
import { DEFAULT_PACING, Pacer, type PacingOptions } from './pacing.ts';
import { QueueWatcher, type StageQueue } from './queues.ts';
import { createRunMetrics } from './run-metrics.ts';
import { openRedis, queueName } from '../workers/connection.ts';

/**
 * `capfilt dashboard`: a fastify server over the stats in Redis.
 *   GET /                       the page (static HTML + JS + uPlot, no build step)
 *   GET /events?run=<id>        SSE: an `overview` event every pollMs
 *   GET /api/overview?run=<id>  the same payload once
 *   GET /api/runs, /api/runs/:id, /api/runs/:id/samples?status=&noise=&reason=&limit=
 *   GET /api/workers, /metrics; /queues (bull-board)
 * Every request is paced per client address and in all (pacing.ts), and the Redis-backed answers
 * are shared between clients for half a poll, so a crowd of clients costs a bounded share of a
 * core: the dashboard often runs on a worker host.
 */
export interface DashboardOptions {
  /** Used when `redis` is not given; default REDIS_URL or redis://127.0.0.1:6379. */
  redisUrl?: string;
  /** Caller-owned connection (not closed by the dashboard). */
  redis?: RedisClient;
  /** Deployment prefix (config `redis.prefix`), shared by the queues and the stats keys. */
  prefix?: string;
  host?: string;
  port?: number;
  token?: string | null;
  readOnly?: boolean;
  /** How often the page is updated over SSE. Default 1000 ms. */
  pollMs?: number;
  /** Request pacing (pacing.ts); `false` serves every request at once. Default DEFAULT_PACING. */
  pacing?: Partial<PacingOptions> | false;
  logger?: boolean;
  /** Time for pacing waits, read caching and snapshots; the real clock by default. */
  clock?: Clock;
}

export interface Dashboard {
  readonly url: string;
  readonly app: FastifyInstance;
  close(): Promise<void>;
}

export interface Overview {
  now: number;
  readOnly: boolean;
  auth: boolean;
  runs: RunSummary[];
  run: RunSnapshot | null;
  queues: StageQueue[];
  workers: WorkerView[];
  warnings: string[];
}

const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url));
const require = createRequire(import.meta.url);

/** Static files served from the package: a fixed table, so no request path reaches the disk. */
const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: `${PUBLIC_DIR}index.html`, type: 'text/html; charset=utf-8' },
  '/assets/app.js': { file: `${PUBLIC_DIR}app.js`, type: 'text/javascript; charset=utf-8' },
  '/assets/charts.js': { file: `${PUBLIC_DIR}charts.js`, type: 'text/javascript; charset=utf-8' },
  '/assets/style.css': { file: `${PUBLIC_DIR}style.css`, type: 'text/css; charset=utf-8' },
  '/assets/uPlot.iife.min.js': { file: require.resolve('uplot/dist/uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  '/assets/uPlot.min.css': { file: require.resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

/** Stages with waiting jobs and no live worker that serves them. */
export function stallWarnings(queues: readonly StageQueue[], workers: readonly WorkerView[]): string[] {
  const out: string[] = [];
  for (const q of queues) {
    const waiting = q.counts.waiting + q.counts.prioritized + q.counts.delayed;
    if (waiting === 0) continue;
    if (!workers.some((w) => w.live && w.stages.includes(q.stage))) {
      out.push(`Stage "${q.stage}" has ${waiting} waiting job${waiting === 1 ? '' : 's'} but no live worker serves it.`);
    }
  }
  return out;
}

export async function startDashboard(opts: DashboardOptions = {}): Promise<Dashboard> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 8080;
  const token = opts.token || null;
  checkBind(host, token);
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  const readOnly = opts.readOnly ?? false;
  const pollMs = opts.pollMs ?? 1000;
  const clock = opts.clock ?? realClock;
  const ownRedis = !opts.redis;
  const url = opts.redisUrl ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const redis = opts.redis ?? openRedis(url, { name: 'dashboard' });
  const reader = new StatsReader(redis, prefix);
  const queues = new QueueWatcher(redis, prefix, readOnly, (stage) => queueName(url, prefix, stage));
  const metrics = createRunMetrics(reader, queues);

  const pacer = new Pacer({ ...DEFAULT_PACING, ...(opts.pacing === false ? { ratePerSec: 0 } : opts.pacing) });
  const assets = new Map(await Promise.all(Object.entries(ASSETS).map(async ([path, a]) => [path, { type: a.type, body: await readFile(a.file) }] as const)));

  // SSE streams never go idle; without forcing, close() would wait for every open page to leave.
  const app = Fastify({ logger: opts.logger ?? false, forceCloseConnections: true });
  // Registered before auth, so that a flood of unauthenticated requests is paced too.
  if (pacer.enabled) {
    app.addHook('onRequest', async (req, reply) => {
      const turn = pacer.admit(req.ip, clock.now());
      if ('refusedRetryAfterS' in turn) {
        return reply.code(503).header('retry-after', String(turn.refusedRetryAfterS))
          .send({ error: 'DASHBOARD_BUSY', message: `too many requests; retry after ${turn.refusedRetryAfterS} s` });
      }
      if (turn.waitMs > 0) await clock.sleep(turn.waitMs);
    });
  }
  if (token) installAuth(app, token);
  await app.register(fastifySSE, { heartbeatInterval: 15_000 });
  await queues.mount(app);

  // Clients asking the same question within `ttlMs` share one Redis read. Keys carry a run id
  // from the query string, so stale entries are dropped before the map can grow with them.
  const shared = new Map<string, { at: number; value: Promise<unknown> }>();
  function sharedRead<T>(key: string, ttlMs: number, read: () => Promise<T>): Promise<T> {
    const now = clock.now();
    const hit = shared.get(key);
    if (hit && now - hit.at < ttlMs) return hit.value as Promise<T>;
    if (shared.size >= 256) for (const [k, e] of shared) if (now - e.at >= ttlMs) shared.delete(k);
    const value = read();
    shared.set(key, { at: now, value });
    value.catch(() => shared.delete(key));
    return value;
  }
  const ttl = pollMs / 2;

  async function readOverview(runId: string | null): Promise<Overview> {
    const runs = await reader.listRuns(20);
    queues.addFromRuns(runs.map((r) => r.meta));
    const id = runId && runs.some((r) => r.meta.runId === runId) ? runId : runs[0]?.meta.runId ?? null;
    const now = clock.now();
    const [run, q, workers] = await Promise.all([id ? reader.run(id, now) : null, queues.depths(), reader.workers(now)]);
    return { now, readOnly, auth: token !== null, runs, run, queues: q, workers, warnings: stallWarnings(q, workers) };
  }
  const overview = (runId: string | null) => sharedRead(`overview:${runId ?? ''}`, ttl, () => readOverview(runId));

  for (const [path, asset] of assets) {
    app.get(path, async (_req, reply) => reply.type(asset.type).header('cache-control', 'no-cache').send(asset.body));
  }
  app.get('/favicon.ico', async (_req, reply) => reply.code(204).send());

  app.get('/api/overview', async (req) => overview((req.query as { run?: string }).run ?? null));
  app.get('/api/runs', async () => sharedRead('runs', ttl, () => reader.listRuns(50)));
  app.get('/api/runs/:id', async (req, reply) => {
    const snap = await reader.run((req.params as { id: string }).id, clock.now());
    return snap ?? reply.code(404).send({ error: 'no such run' });
  });
  app.get('/api/runs/:id/samples', async (req) => {
    const q = req.query as { status?: string; noise?: string; reason?: string; limit?: string };
    const status = ['kept', 'filtered', 'failed', 'pending'].includes(q.status ?? '') ? (q.status as RowStatus) : null;
    return reader.samples((req.params as { id: string }).id, {
      status, noise: q.noise || null, reason: q.reason || null, limit: q.limit ? Math.max(1, Math.min(1000, Number(q.limit) || 60)) : undefined,
    });
  });
  app.get('/api/workers', async () => sharedRead('workers', ttl, () => reader.workers(clock.now())));
  app.get('/metrics', async (_req, reply) => reply.type(metrics.registry.contentType).send(await sharedRead('metrics', ttl, () => metrics.registry.metrics())));

  app.get('/events', { sse: 'only' }, async (req, reply) => {
    const runId = (req.query as { run?: string }).run ?? null;
    reply.sse.keepAlive();
    let timer: NodeJS.Timeout | null = null;
    let seq = 0;
    const push = async () => {
      if (!reply.sse.isConnected) return;
      try {
        await reply.sse.send({ id: String(++seq), event: 'overview', data: await overview(runId) });
      } catch (e) {
        await reply.sse.send({ event: 'problem', data: { message: (e as Error).message } }).catch(() => undefined);
      }
      if (reply.sse.isConnected) timer = setTimeout(push, pollMs);
    };
    reply.sse.onClose(() => { if (timer) clearTimeout(timer); });
    await push();
  });

  try {
    await app.listen({ host, port });
  } catch (e) {
    await app.close().catch(() => undefined);
    await queues.close();
    if (ownRedis) redis.disconnect();
    throw new CapfiltError('DASHBOARD_LISTEN_FAILED', `cannot listen on ${host}:${port}: ${(e as Error).message}`, { host, port }, { cause: e });
  }
  const addr = app.server.address();
  const boundPort = typeof addr === 'object' && addr ? addr.port : port;
  const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${shownHost}:${boundPort}/`,
    app,
    async close() {
      await app.close();
      await queues.close();
      if (ownRedis) await redis.quit().catch(() => redis.disconnect());
    },
  };
}
