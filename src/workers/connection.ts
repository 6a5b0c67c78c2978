import type { ConnectionOptions } from 'bullmq';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { CapfiltError, systemErrorOf } from '../core/errors.ts';
import type { RedisClient } from '../core/redis.ts';

/**
 * Redis connections. BullMQ workers need `maxRetriesPerRequest: null` (blocking commands must
 * wait through reconnects). Plain clients keep a bounded retry by default so that a dead Redis
 * surfaces as an error instead of a hang; a worker host's client waits through reconnects
 * instead (`waitForReconnect`), so that a Redis restart pauses its jobs rather than failing
 * them. Every client gets an `error` listener: without one ioredis prints "[ioredis] Unhandled
 * error event" with a stack for every reconnect attempt.
 *
 * A URL names one Redis (`redis://[user:pw@]host:port[/db]`, `rediss://` for TLS) or a Redis
 * Cluster by some of its nodes (`redis+cluster://[user:pw@]h1:7000,h2:7001[,…]`,
 * `rediss+cluster://` for TLS); the client learns the other nodes and the slot map from them.
 */
export type { RedisClient };

export interface RedisEndpoint {
  cluster: boolean;
  nodes: { host: string; port: number }[];
  username?: string;
  password?: string;
  db: number;
  tls: boolean;
}

const CLUSTER_URL = /^(rediss?)\+cluster:\/\/(?:([^@/]*)@)?([^/?#]+)\/?$/;

export function isClusterUrl(url: string): boolean {
  return /^rediss?\+cluster:\/\//.test(url);
}

export function parseRedisUrl(url: string): RedisEndpoint {
  const m = CLUSTER_URL.exec(url);
  if (m) {
    const [, scheme, auth, hosts] = m;
    const [user, pass] = auth ? (auth.includes(':') ? [auth.slice(0, auth.indexOf(':')), auth.slice(auth.indexOf(':') + 1)] : ['', auth]) : ['', ''];
    const nodes = hosts!.split(',').map((h) => {
      const u = new URL(`redis://${h}`);
      return { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port ? Number(u.port) : 6379 };
    });
    return { cluster: true, nodes, username: user ? decodeURIComponent(user) : undefined, password: pass ? decodeURIComponent(pass) : undefined, db: 0, tls: scheme === 'rediss' };
  }
  const u = new URL(url);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  return {
    cluster: false,
    nodes: [{ host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port ? Number(u.port) : 6379 }],
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: Number.isFinite(db) ? db : 0,
    tls: u.protocol === 'rediss:',
  };
}

/** Options for one node's connection (the single Redis, or each node of a cluster). */
export function redisOptionsFromUrl(url: string): RedisOptions {
  const e = parseRedisUrl(url);
  return {
    host: e.nodes[0]!.host,
    port: e.nodes[0]!.port,
    username: e.username,
    password: e.password,
    db: e.db,
    ...(e.tls ? { tls: {} } : {}),
  };
}

/**
 * A new client for `url`: a Cluster client for a cluster URL. Cluster clients ride out a
 * master's failover (its replica is promoted): commands to its slots are retried while the
 * cluster reports it down or moves the slots, and the slot map is refreshed.
 */
function newClient(url: string, options: RedisOptions): RedisClient {
  const e = parseRedisUrl(url);
  if (!e.cluster) return new Redis({ ...redisOptionsFromUrl(url), ...options });
  const { host: _h, port: _p, db: _d, ...node } = { ...redisOptionsFromUrl(url), ...options };
  const cluster: ClusterOptions = {
    redisOptions: node,
    enableOfflineQueue: options.enableOfflineQueue ?? true,
    lazyConnect: options.lazyConnect ?? false,
    retryDelayOnClusterDown: 300,
    retryDelayOnFailover: 300,
    retryDelayOnTryAgain: 300,
    // A probe that passes its own retryStrategy (redisReachable) gives up at once on a cluster too.
    ...(options.retryStrategy === undefined ? {} : { clusterRetryStrategy: () => null }),
  };
  return new Cluster(e.nodes, cluster);
}

/**
 * BullMQ's connection: options for a single Redis (BullMQ opens its own connections from them),
 * a Cluster client for a cluster (BullMQ duplicates it for its blocking connection).
 */
export function workerConnection(url: string): ConnectionOptions {
  if (isClusterUrl(url)) return newClient(url, { maxRetriesPerRequest: null }) as Cluster;
  const { host, port, username, password, db, tls } = redisOptionsFromUrl(url);
  return { host, port, username, password, db, tls, maxRetriesPerRequest: null };
}

/**
 * Closes what `workerConnection` opened for a cluster: BullMQ leaves a client it was given
 * open when its queue or worker closes (it only closes connections it made itself).
 */
export function releaseConnection(c: ConnectionOptions): void {
  if (c instanceof Cluster) c.disconnect();
}

/**
 * BullMQ keeps every key of a queue in one slot only when the queue's name carries a hash tag.
 * On a cluster each stage queue is named `{<prefix>.<stage>}`: one slot per queue, the
 * stages' queues spread over the masters. A single Redis keeps the plain stage names.
 */
export function queueName(url: string, prefix: string, stage: string): string {
  return isClusterUrl(url) ? `{${prefix}.${stage}}` : stage;
}

export interface OpenRedisOptions {
  /** Queue commands while disconnected and send them once Redis is back, however long that takes. */
  waitForReconnect?: boolean;
  /** Where connection losses are reported (once per outage); without it they are only swallowed. */
  log?: Logger;
  /** What the client is for, in that report. */
  name?: string;
}

export function openRedis(url: string, o: OpenRedisOptions = {}): RedisClient {
  const r = newClient(url, { maxRetriesPerRequest: o.waitForReconnect ? null : 3 });
  const report = outageReporter(redisAddress(url), o.name ?? 'redis client', o.log);
  // Commands that fail report the error to their caller; the events only say the link is down.
  r.on('error', report.error);
  r.on('ready', report.ready);
  return r;
}

/** host:port of a Redis URL, without credentials, for logs and error messages. */
export function redisAddress(url: string): string {
  try {
    const e = parseRedisUrl(url);
    const first = `${e.nodes[0]!.host}:${e.nodes[0]!.port}`;
    return e.cluster ? `cluster ${first}${e.nodes.length > 1 ? ` (+${e.nodes.length - 1})` : ''}` : first;
  } catch {
    return 'redis';
  }
}

/**
 * Logs a connection's errors once per outage: the first error, then one line when it is back
 * (`ready`), or, for emitters without a ready event (BullMQ queues and workers), when no error
 * came for `quietMs`. Every reconnect attempt emits an error; one line says all of it.
 */
export function outageReporter(address: string, what: string, log?: Logger, quietMs = 10_000): { error(e: unknown): void; ready(): void } {
  let since = 0;
  let last = 0;
  let errors = 0;
  const ready = () => {
    if (!since) return;
    log?.info({ redis: address, client: what, downMs: Date.now() - since, errors }, `${what}: Redis connection restored`);
    since = 0;
    errors = 0;
  };
  return {
    error(e: unknown) {
      const now = Date.now();
      if (since && now - last > quietMs) ready();
      last = now;
      errors++;
      if (since) return;
      since = now;
      log?.warn({ redis: address, client: what, err: (e as Error)?.message ?? String(e) }, `${what}: lost the connection to Redis; reconnecting`);
    },
    ready,
  };
}

/**
 * True for errors that say Redis could not be reached (refused, reset, closed, retries used
 * up, still loading its dataset) rather than that a command was wrong: those are worth
 * waiting out. Socket errors are known by their code (SYSTEM_ERROR_KINDS in src/core/errors.ts,
 * through causes and AggregateErrors); ioredis's own connection errors carry no code, so they
 * are known by their class name or their fixed texts.
 */
export function isRedisConnectionError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if (e.name === 'MaxRetriesPerRequestError') return true;
  if (systemErrorOf(e)?.kind === 'connection') return true;
  return IOREDIS_CONNECTION_TEXTS.test(e.message);
}

/**
 * ioredis: offline queue off, client closed, retries used up, a cluster that stayed down through
 * every redirection; Redis: LOADING while it reads its dataset, CLUSTERDOWN / TRYAGAIN while a
 * cluster fails a master over.
 */
const IOREDIS_CONNECTION_TEXTS = /max retries per request|Connection is closed|Stream isn't writeable|Too many Cluster redirections|^LOADING |^CLUSTERDOWN |^TRYAGAIN /;

export interface OutageOptions {
  url: string;
  log: Logger;
  /** Give up (REDIS_LOST) once Redis has not answered for this long. */
  maxOutageMs: number;
  /** Pause between tries while Redis is away. */
  pauseMs?: number;
  /** Stops waiting (rethrows the connection error) when aborted. */
  signal?: AbortSignal;
}

/**
 * Runs Redis work that may be retried, riding out a Redis that restarts: a connection error
 * is retried after a pause until Redis answers again or `maxOutageMs` have passed since the
 * first failure (then REDIS_LOST). One object is shared by every caller of a process, so an
 * outage is logged once (when it starts and when it ends), whoever hits it.
 */
export class RedisOutage {
  private since = 0;
  private tries = 0;

  constructor(private readonly o: OutageOptions) {}

  /** Milliseconds since Redis stopped answering, or 0 while it answers. */
  downMs(): number {
    return this.since ? Date.now() - this.since : 0;
  }

  async run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        const value = await fn();
        if (this.since) {
          this.o.log.info({ redis: redisAddress(this.o.url), downMs: Date.now() - this.since, tries: this.tries }, 'Redis answers again; the run continues');
          this.since = 0;
          this.tries = 0;
        }
        return value;
      } catch (e) {
        if (!isRedisConnectionError(e) || this.o.signal?.aborted) throw e;
        const now = Date.now();
        if (!this.since) {
          this.since = now;
          this.o.log.warn(
            { redis: redisAddress(this.o.url), while: what, err: (e as Error).message, giveUpAfterMs: this.o.maxOutageMs },
            `Redis at ${redisAddress(this.o.url)} does not answer; waiting for it to come back (up to ${Math.round(this.o.maxOutageMs / 1000)} s, redis.outageTimeoutMs)`,
          );
        }
        this.tries++;
        if (now - this.since >= this.o.maxOutageMs) {
          throw new CapfiltError(
            'REDIS_LOST',
            `Redis at ${redisAddress(this.o.url)} has not answered for ${Math.round((now - this.since) / 1000)} s (redis.outageTimeoutMs = ${this.o.maxOutageMs}; last error while ${what}: ${(e as Error).message}). Start Redis again and rerun the same command: the run resumes`,
            { url: redisAddress(this.o.url), downMs: now - this.since },
            { cause: e },
          );
        }
        await new Promise((r) => setTimeout(r, Math.min(this.o.pauseMs ?? 1000, Math.max(1, this.since + this.o.maxOutageMs - now))));
      }
    }
  }
}

/**
 * True when `p` settles (either way) within `ms`. For shutdown steps that wait on Redis or on
 * jobs: a process that is closing must not wait for ever on a Redis that is gone.
 */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** True when a Redis answers PING at `url` within `timeoutMs`. */
export async function redisReachable(url: string, timeoutMs = 1500): Promise<boolean> {
  const r = newClient(url, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: timeoutMs, retryStrategy: () => null, enableOfflineQueue: false });
  r.on('error', () => undefined);
  try {
    // A cluster client connects once it has the slot map: bounded here like a node's connectTimeout.
    if (!(await settlesWithin(r.connect(), timeoutMs))) return false;
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

/** BullMQ silently stalls or loses jobs when Redis evicts keys; say so before starting. */
export async function checkEvictionPolicy(redis: RedisClient): Promise<string | null> {
  try {
    // On a cluster, every master holds some of the run's keys: each must be noeviction.
    const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
    for (const node of nodes) {
      const [, policy] = (await node.config('GET', 'maxmemory-policy')) as [string, string];
      if (policy !== 'noeviction') return `Redis ${nodes.length > 1 ? `node ${node.options.host}:${node.options.port} ` : ''}maxmemory-policy is "${policy}"; BullMQ needs "noeviction" (CONFIG SET maxmemory-policy noeviction)`;
    }
    return null;
  } catch {
    return null;
  }
}

export function redisUnavailable(url: string, hint: string): CapfiltError {
  return new CapfiltError('REDIS_UNAVAILABLE', `no Redis answers at ${url}. ${hint}`, { url });
}
