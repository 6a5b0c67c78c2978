import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { freePort } from '../../src/workers/private-redis.ts';

/**
 * A real Redis Cluster on 127.0.0.1 for one test file: `masters` × (1 + `replicas`) redis-server
 * processes started with `--cluster-enabled yes` on free ports (each in its own temp dir, AOF
 * on unless `aof: false`, noeviction), joined by `redis-cli --cluster create`. Also what
 * `bench:scaling -- --cluster` and `bench:dup-index -- --cluster` run on. A node can be killed with SIGKILL;
 * `waitForFailover` waits until the cluster is healthy again with a replica promoted.
 */
export interface ClusterNode {
  port: number;
  child: ChildProcess;
  dir: string;
}

export interface LocalCluster {
  /** `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…` (every node). */
  url: string;
  nodes: ClusterNode[];
  /** Ports of the current masters (as the cluster reports them). */
  masters(): Promise<number[]>;
  /** Keys held by each live master (DBSIZE), by port. */
  keysPerMaster(): Promise<Record<number, number>>;
  /** The master port serving a key's slot. */
  masterOf(key: string): Promise<number>;
  kill(port: number): Promise<void>;
  /** Until every slot is served again (state ok on every live node) and `dead` is no master. */
  waitForFailover(dead: number, timeoutMs?: number): Promise<void>;
  dispose(): Promise<void>;
}

const NODE_TIMEOUT_MS = 2000;

async function ping(port: number): Promise<boolean> {
  const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, connectTimeout: 500 });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

async function clusterInfo(port: number): Promise<string> {
  const r = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500 });
  r.on('error', () => undefined);
  try {
    return (await r.call('CLUSTER', 'INFO')) as string;
  } catch {
    return '';
  } finally {
    r.disconnect();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startRedisCluster(o: { masters?: number; replicas?: number; aof?: boolean } = {}): Promise<LocalCluster> {
  const masters = o.masters ?? 3;
  const total = masters * (1 + (o.replicas ?? 1));
  const root = mkdtempSync(join(tmpdir(), 'capfilt-cluster-'));
  const nodes: ClusterNode[] = [];
  const killAll = () => {
    for (const n of nodes) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
  };
  process.once('exit', killAll);
  for (let i = 0; i < total; i++) {
    const port = await freePort();
    const dir = join(root, String(port));
    mkdirSync(dir);
    const child = spawn('redis-server', [
      '--bind', '127.0.0.1', '--port', String(port), '--dir', dir, '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
      '--cluster-node-timeout', String(NODE_TIMEOUT_MS), '--save', '', '--appendonly', o.aof === false ? 'no' : 'yes', '--maxmemory-policy', 'noeviction',
    ], { stdio: 'ignore' });
    nodes.push({ port, child, dir });
  }
  for (const n of nodes) {
    for (let i = 0; !(await ping(n.port)); i++) {
      if (i > 100 || n.child.exitCode !== null) throw new Error(`cluster node ${n.port} did not start`);
      await sleep(50);
    }
  }
  const created = spawnSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', String(o.replicas ?? 1), '--cluster-yes'], { encoding: 'utf8' });
  if (created.status !== 0) throw new Error(`redis-cli --cluster create failed:\n${created.stdout}\n${created.stderr}`);
  const live = () => nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null);
  const healthy = async () => (await Promise.all(live().map((n) => clusterInfo(n.port)))).every((s) => /cluster_state:ok/.test(s));
  for (let i = 0; !(await healthy()); i++) {
    if (i > 200) throw new Error('cluster never reached state ok');
    await sleep(100);
  }

  const client = () => new Cluster(live().map((n) => ({ host: '127.0.0.1', port: n.port })), { lazyConnect: false });
  const masterPorts = async () => {
    const c = client();
    try {
      await new Promise<void>((resolve, reject) => {
        c.once('ready', () => resolve());
        c.once('error', reject);
      });
      const slots = (await c.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
      return [...new Set(slots.map((s) => s[2][1]))].sort((a, b) => a - b);
    } finally {
      c.disconnect();
    }
  };

  return {
    url: `redis+cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`,
    nodes,
    masters: masterPorts,
    async keysPerMaster() {
      const out: Record<number, number> = {};
      for (const port of await masterPorts()) {
        const r = new Redis({ host: '127.0.0.1', port });
        out[port] = await r.dbsize();
        r.disconnect();
      }
      return out;
    },
    async masterOf(key: string) {
      const r = new Redis({ host: '127.0.0.1', port: live()[0]!.port });
      const slot = Number(await r.cluster('KEYSLOT', key));
      const slots = (await r.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
      r.disconnect();
      return slots.find(([from, to]) => slot >= from && slot <= to)![2][1];
    },
    async kill(port: number) {
      const n = nodes.find((x) => x.port === port);
      if (!n || n.child.exitCode !== null || n.child.signalCode !== null) return;
      const exited = new Promise<void>((r) => n.child.once('exit', () => r()));
      n.child.kill('SIGKILL');
      await exited;
    },
    async waitForFailover(dead: number, timeoutMs = 30_000) {
      const t0 = Date.now();
      for (;;) {
        if ((await healthy()) && !(await masterPorts().catch(() => [dead])).includes(dead)) return;
        if (Date.now() - t0 > timeoutMs) throw new Error(`no failover of ${dead} within ${timeoutMs} ms`);
        await sleep(200);
      }
    },
    async dispose() {
      process.removeListener('exit', killAll);
      killAll();
      await Promise.all(nodes.map((n) => (n.child.exitCode === null && n.child.signalCode === null ? new Promise((r) => n.child.once('exit', r)) : null)));
      rmSync(root, { recursive: true, force: true });
    },
  };
}
