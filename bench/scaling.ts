/**
 * Scaling benchmark: 1, 2 and 4 worker PROCESSES per stage group against one Redis and one
 * coordinator, on the demo model and a loopback image server. Prints one JSON object.
 *   npm run bench:scaling -- [--rows 800] [--shard-rows 25] [--levels 1,2,4] [--max-in-flight 16]
 *                            [--model DIR] [--skip-extras] [--cluster]
 *
 * Topology per level N (the docker-compose split): N × `capfilt worker --stages download,write`,
 * N × `--stages caption`, N × `--stages filter`, each a separate child process with one ONNX
 * intra-op thread (`--threads 1`), so N processes per stage are N threads of that stage's work.
 * One coordinator (`runPipeline` with workers off, the library call behind
 * `capfilt run --no-workers`) plans and feeds in this process; a private redis-server child
 * (temp dir, free port) holds the queues, so the shared Redis is not disturbed and its counters
 * belong to this benchmark alone. Images: 640×480 photo-like JPEGs (gradients, soft blobs, sensor
 * noise) served from 127.0.0.1, each URL unique bytes (8 bytes after the JPEG end marker) so the
 * run-wide duplicate index holds one record per row, as on real data.
 *
 * Per level: the missing worker processes start (processes are kept from level to level, as
 * scaling out adds workers to a running deployment), a small run warms them (models loaded),
 * Redis is flushed, the idle command rate of the processes is measured, then the measured run
 * (the same input at every level, a fresh output folder and so a fresh run). Reported:
 * rows/s; per-stage busy time (sum of the shards' stage timings from NNNNN_stats.json) and slot
 * utilisation; CPU seconds per process group (from /proc), CPU utilisation = sum / wall / cores,
 * and how busy the whole machine was (/proc/stat, other people's work included); Redis commands
 * (INFO stats total_commands_processed delta, less this benchmark's own sampling commands) per
 * shard and per row, raw and less the time-driven polling, top commands, Redis CPU and command
 * execution time per row (commands run inside Lua scripts count, as Redis counts them); peak
 * Redis used_memory above the flushed baseline; staging peak bytes, staged bytes per image and
 * per row of the in-flight bound; worker peak RSS (VmHWM). Efficiency = rows/s(N) / (N ×
 * rows/s(1)); each level is also compared with the CPU count.
 *
 * Extras (unless --skip-extras), at N=1: the same run with the Redis staging backend (commands,
 * Redis CPU and memory per row when images travel through Redis) and with 4× larger shards
 * (separates per-shard from per-row commands).
 *
 * This machine's cores are shared with other people's tests and a training run: the load
 * average is recorded before every level and the machine-wide busy fraction during it. Read the
 * ratios, not the absolute rows/s.
 *
 * --cluster runs the same levels on a local Redis Cluster instead of the single redis-server:
 * 3 masters + 3 replicas (test/helpers/redis-cluster.ts: redis-server --cluster-enabled yes on
 * free loopback ports, joined by redis-cli --cluster create; no persistence, as the single one),
 * every process given its redis+cluster:// URL. Redis figures are then summed over the masters,
 * and `redis.perMaster` gives each master's own: commands/s and per row over the measured run
 * (INFO total_commands_processed delta less this benchmark's sampling commands sent to that
 * master), CPU, client and replication bytes per row, used_memory after the run and its peak
 * above the baseline, keys after the run (DBSIZE), top commands. The replicas' CPU is reported
 * beside the masters'. The per-master figures are printed for a single Redis too (one master).
 * Cheap form for a small machine: `-- --cluster --rows 400 --levels 1,2 --skip-extras`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, existsSync, cpSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Redis } from 'ioredis';
import sharp from 'sharp';
import { loadConfig, type Override } from '../src/config/load.ts';
import { runPipeline } from '../src/run/run.ts';
import { runIdFor } from '../src/pipeline/shards.ts';
import type { RunSummary } from '../src/run/summary.ts';
import { logger } from '../src/core/logger.ts';
import { startPrivateRedis } from '../src/workers/private-redis.ts';
import { openRedis, queueName } from '../src/workers/connection.ts';
import type { RedisClient } from '../src/core/redis.ts';
import { startRedisCluster } from '../test/helpers/redis-cluster.ts';
import { flushMasters, infoOf, keysPerMaster, masterIndexOf, masterNodes, nodeName, ready, replicaNodes, usedMemory } from './redis-masters.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '800' },
    'shard-rows': { type: 'string', default: '25' },
    levels: { type: 'string', default: '1,2,4' },
    'max-in-flight': { type: 'string', default: '16' },
    model: { type: 'string' },
    'skip-extras': { type: 'boolean', default: false },
    cluster: { type: 'boolean', default: false },
  },
});
const ROWS = Number(values.rows);
const SHARD_ROWS = Number(values['shard-rows']);
const LEVELS = values.levels.split(',').map(Number);
const MAX_IN_FLIGHT = Number(values['max-in-flight']);
const CORES = cpus().length;
const TICK = 100; // USER_HZ on Linux
const PREFIX = 'bench-scaling';
const GROUPS = [['download', 'write'], ['caption'], ['filter']] as const;

const round = (x: number, d = 3): number => (Number.isFinite(x) ? Number(x.toFixed(d)) : x);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = logger();
log.level = 'warn';
const work = mkdtempSync(join(tmpdir(), 'capfilt-bench-scaling-'));

/** The demo model when it is in the tree, else the t1 parity checkpoints (same code path, tiny). */
function modelDir(): { dir: string; name: string } {
  if (values.model) return { dir: values.model, name: values.model };
  const demo = join(ROOT, 'models', 'demo');
  if (existsSync(join(demo, 'captioner', 'model.safetensors')) && existsSync(join(demo, 'filter', 'model.safetensors'))) return { dir: demo, name: 'models/demo' };
  const fx = join(ROOT, 'test', 'fixtures', 'parity');
  const dir = join(work, 't1-model');
  for (const role of ['captioner', 'filter']) {
    cpSync(join(fx, 't1', role), join(dir, role), { recursive: true });
    cpSync(join(fx, 't1-tokenizer'), join(dir, role), { recursive: true });
  }
  return { dir, name: 'test/fixtures/parity/t1' };
}

/** Seeded photo-like 640×480 JPEG: two-colour gradient, soft blobs, gaussian-ish sensor noise. */
async function photoLike(seed: number): Promise<Buffer> {
  let s = seed * 2654435761 >>> 0;
  const rnd = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const [w, h] = [640, 480];
  const px = Buffer.alloc(w * h * 3);
  const c0 = [rnd(), rnd(), rnd()].map((v) => v * 255);
  const c1 = [rnd(), rnd(), rnd()].map((v) => v * 255);
  const blobs = Array.from({ length: 6 }, () => ({ x: rnd() * w, y: rnd() * h, r: 40 + rnd() * 160, c: [rnd(), rnd(), rnd()].map((v) => (v - 0.5) * 200) }));
  const angle = rnd() * Math.PI;
  const [dx, dy] = [Math.cos(angle), Math.sin(angle)];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const t = Math.min(1, Math.max(0, ((x - w / 2) * dx + (y - h / 2) * dy) / 500 + 0.5));
      const noise = (rnd() + rnd() + rnd() - 1.5) * 14;
      for (let ch = 0; ch < 3; ch++) {
        let v = c0[ch] * (1 - t) + c1[ch] * t + noise;
        for (const b of blobs) {
          const d2 = ((x - b.x) ** 2 + (y - b.y) ** 2) / (b.r * b.r);
          if (d2 < 4) v += b.c[ch] * Math.exp(-d2);
        }
        px[(y * w + x) * 3 + ch] = Math.max(0, Math.min(255, v));
      }
    }
  }
  return sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 85 }).toBuffer();
}

/** `/img/<n>.jpg`: one of the pool's photos + 8 bytes after its end marker, unique per n. */
async function imageServer(pool: Buffer[]) {
  let bytes = 0;
  let requests = 0;
  const server = createServer((req, res) => {
    const m = /^\/img\/(\d+)\.jpg$/.exec(req.url ?? '');
    if (!m) return void res.writeHead(404).end();
    const n = Number(m[1]);
    const tail = Buffer.alloc(8);
    tail.writeBigUInt64BE(BigInt(n));
    const body = Buffer.concat([pool[n % pool.length], tail]);
    bytes += body.length;
    requests++;
    res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    served: () => ({ bytes, requests }),
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

function writeInput(file: string, base: string, rows: number, offset: number): void {
  const lines = ['url,caption'];
  for (let i = 0; i < rows; i++) lines.push(`${base}/img/${offset + i}.jpg,a photo number ${offset + i} of a colourful scene`);
  writeFileSync(file, `${lines.join('\n')}\n`);
}

/** utime+stime of a process, all its threads (inference thread, libuv pool), in seconds. */
function procCpu(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICK;
  } catch {
    return 0;
  }
}

function peakRssMB(pid: number): number {
  try {
    return round(Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024, 1);
  } catch {
    return 0;
  }
}

/** Machine-wide busy and total jiffies (every process on the box, not only ours). */
function machineJiffies(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - (f[4] ?? 0), total };
}

interface Worker { child: ChildProcess; group: string; stderr: string[] }

async function startWorker(redisUrl: string, stages: readonly string[]): Promise<Worker> {
  const env: NodeJS.ProcessEnv = { ...process.env, CAPFILT_LOG_LEVEL: 'warn' };
  delete env.CAPFILT_CONFIG;
  delete env.REDIS_URL;
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'capfilt.js'), 'worker', '--stages', stages.join(','), '--redis-url', redisUrl, '--prefix', PREFIX, '--threads', '1'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const w: Worker = { child, group: stages.join(','), stderr: [] };
  child.stderr!.on('data', (d: Buffer) => w.stderr.push(d.toString()) > 20 && w.stderr.shift());
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker ${w.group} did not start in 180 s: ${w.stderr.join('')}`)), 180_000);
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('serving')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker ${w.group} exited with ${code}: ${w.stderr.join('')}`));
    });
  });
  return w;
}

async function stopWorker(w: Worker): Promise<void> {
  if (w.child.exitCode !== null) return;
  const exited = new Promise<void>((r) => w.child.once('exit', () => r()));
  w.child.kill('SIGTERM');
  await Promise.race([exited, sleep(30_000)]);
  if (w.child.exitCode === null) w.child.kill('SIGKILL');
}

/** One node's counters: commands (in all and by command), CPU, command time, network bytes. */
async function nodeSnapshot(node: Redis) {
  const { fields: all, replyBytes } = await infoOf(node, 'everything');
  const calls: Record<string, number> = {};
  let usec = 0;
  for (const [k, v] of Object.entries(all)) {
    if (!k.startsWith('cmdstat_')) continue;
    calls[k.slice(8)] = Number(/calls=(\d+)/.exec(v)![1]);
    usec += Number(/usec=(\d+)/.exec(v)![1]);
  }
  return {
    commands: Number(all.total_commands_processed), cpu: Number(all.used_cpu_sys) + Number(all.used_cpu_user), usec, calls,
    // Redis 7's total_net_* include replication traffic, also given apart (total_net_repl_*):
    // the clients' own bytes are the difference.
    netIn: Number(all.total_net_input_bytes) - Number(all.total_net_repl_input_bytes ?? 0),
    netOut: Number(all.total_net_output_bytes) - Number(all.total_net_repl_output_bytes ?? 0),
    replOut: Number(all.total_net_repl_output_bytes ?? 0), replyBytes,
  };
}

/** Every master's counters, and their sums: the whole deployment (one master on a single Redis). */
async function redisSnapshot(redis: RedisClient) {
  const per = await Promise.all(masterNodes(redis).map(nodeSnapshot));
  const calls: Record<string, number> = {};
  for (const p of per) for (const [c, n] of Object.entries(p.calls)) calls[c] = (calls[c] ?? 0) + n;
  const total = (f: 'commands' | 'cpu' | 'usec') => per.reduce((a, p) => a + p[f], 0);
  return { commands: total('commands'), cpu: total('cpu'), usec: total('usec'), calls, per };
}

/** CPU seconds of a cluster's replicas (they apply every write their master makes); 0 without. */
async function replicaCpu(redis: RedisClient): Promise<number> {
  const cpu = await Promise.all(replicaNodes(redis).map(async (n) => {
    const { fields } = await infoOf(n, 'cpu');
    return Number(fields.used_cpu_sys) + Number(fields.used_cpu_user);
  }));
  return cpu.reduce((a, b) => a + b, 0);
}

/** Sizes of the fs staging store: images (blob.*) and shard states. */
function stagingSize(dir: string): { blobBytes: number; blobs: number; stateBytes: number } {
  const s = { blobBytes: 0, blobs: 0, stateBytes: 0 };
  const walk = (d: string) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        try {
          const size = statSync(p).size;
          if (e.name.startsWith('blob.')) {
            s.blobBytes += size;
            s.blobs++;
          } else if (e.name === 'state.json') s.stateBytes += size;
        } catch { /* written and removed between readdir and stat */ }
      }
    }
  };
  walk(dir);
  return s;
}

interface LevelOptions { n: number; label: string; staging: 'fs' | 'redis'; shardRows: number; rows: number }

const set = (path: string, value: unknown): Override => ({ path, value, source: 'bench:scaling' });

function runConfig(redisUrl: string, input: string, out: string, o: LevelOptions, model: string) {
  return loadConfig({
    env: {},
    overrides: [
      set('redis.url', redisUrl), set('redis.prefix', PREFIX), set('input.path', input), set('output.dir', out),
      set('shards.rows', o.shardRows), set('pipeline.maxInFlightShards', MAX_IN_FLIGHT), set('staging.backend', o.staging),
      set('models.captioner', model), set('models.filter', model), set('download.ssrfAllowlist', ['127.0.0.1']),
      set('download.perHostConcurrency', 64),
    ],
  });
}

/** Worker processes, kept across levels (starting one costs seconds of CPU); levels only grow. */
const workers: Worker[] = [];

async function ensureWorkers(redisUrl: string, n: number): Promise<void> {
  const starts: Promise<Worker>[] = [];
  for (const g of GROUPS) for (let i = workers.filter((w) => w.group === g.join(',')).length; i < n; i++) starts.push(startWorker(redisUrl, g));
  workers.push(...(await Promise.all(starts)));
}

/** Aborts a run when a worker process dies under it (the run would otherwise wait forever). */
function watchWorkers(): { signal: AbortSignal; dispose(): void } {
  const ctrl = new AbortController();
  const onExit = (w: Worker) => (code: number | null) => ctrl.abort(new Error(`worker ${w.group} (pid ${w.child.pid}) exited with ${code}: ${w.stderr.join('')}`));
  const handlers = workers.map((w) => [w, onExit(w)] as const);
  for (const [w, h] of handlers) w.child.once('exit', h);
  return { signal: ctrl.signal, dispose: () => handlers.forEach(([w, h]) => w.child.removeListener('exit', h)) };
}

async function runWatched(loaded: ReturnType<typeof runConfig>, redisUrl: string): Promise<RunSummary> {
  const watch = watchWorkers();
  try {
    const s = await runPipeline({ loaded, workers: false, progress: 'none', log, signal: watch.signal, redis: { url: redisUrl, private: true, stop: async () => undefined } });
    if (watch.signal.aborted) throw watch.signal.reason;
    if (s.status !== 'done' || !s.reconciled) throw new Error(`run ${s.runId} ended ${s.status} (reconciled ${s.reconciled}): ${JSON.stringify(s.failedShards)}`);
    return s;
  } finally {
    watch.dispose();
  }
}

async function measureLevel(redisUrl: string, images: Awaited<ReturnType<typeof imageServer>>, model: string, o: LevelOptions) {
  const redis = openRedis(redisUrl);
  await ready(redis);
  const nodes = masterNodes(redis);
  await flushMasters(redis);
  const load = loadavg().map((x) => round(x, 2));
  await ensureWorkers(redisUrl, o.n);
  if (workers.length !== GROUPS.length * o.n) throw new Error(`level N=${o.n} after a larger level: run levels in increasing order`);
  // Warm every process (model load on its first job) with a small run of 3 shards per process.
  const warmIn = join(work, `warm-${o.label}.csv`);
  writeInput(warmIn, images.url, 3 * o.n * 8, 10_000_000);
  const warm = runConfig(redisUrl, warmIn, join(work, `warm-${o.label}`), { ...o, shardRows: 8 }, model);
  await runWatched(warm, redisUrl);
  await flushMasters(redis);
  await sleep(500);

  // Commands this benchmark sends while measuring, by command and by master (`at`: the master
  // serving the key; none: sent to every master), subtracted from Redis's counts.
  const own: Record<string, number> = {};
  const ownAt = nodes.map((): Record<string, number> => ({}));
  const ownReplyBytes = nodes.map(() => 0);
  const mine = (cmd: string, n = 1, at?: number) => {
    own[cmd] = (own[cmd] ?? 0) + n * (at === undefined ? nodes.length : 1);
    ownAt.forEach((o, i) => (at === undefined || at === i) && (o[cmd] = (o[cmd] ?? 0) + n));
  };
  const idle0 = await redisSnapshot(redis);
  // Workers poll in bursts (heartbeats, stalled-job checks, blocking-pop timeouts): 5 s window.
  await sleep(5000);
  const idle1 = await redisSnapshot(redis);
  const idleAt = idle1.per.map((p, i) => (p.commands - idle0.per[i].commands - 1) / 5);
  const idleCommandsPerSec = idleAt.reduce((a, b) => a + b, 0);
  const idleCpuPerSec = (idle1.cpu - idle0.cpu) / 5;
  const baselineAt = await usedMemory(redis);
  const baseline = baselineAt.reduce((a, b) => a + b, 0);

  const input = join(work, `in-${o.rows}.csv`);
  if (!existsSync(input)) writeInput(input, images.url, o.rows, 0);
  const out = join(work, `out-${o.label}`);
  const loaded = runConfig(redisUrl, input, out, o, model);
  const runId = runIdFor(out);
  const stagingRoot = join(out, '.staging', runId);
  // Where the keys the sampler reads live (asked now: these lookups are Redis commands too).
  const inFlightKey = `${PREFIX}:run:{${runId}}:inflight`;
  const stagedBytesKey = `${PREFIX}:stage:{${runId}}:bytes`;
  const waitKey = (q: string) => `${PREFIX}:${queueName(redisUrl, PREFIX, q)}:wait`;
  const at: Record<string, number> = { [inFlightKey]: await masterIndexOf(redis, inFlightKey), [stagedBytesKey]: await masterIndexOf(redis, stagedBytesKey) };
  for (const q of ['download', 'caption', 'filter', 'write']) at[waitKey(q)] = await masterIndexOf(redis, waitKey(q));

  const pids = workers.map((w) => w.child.pid!);
  const cpu0 = pids.map(procCpu);
  const self0 = process.cpuUsage();
  const mach0 = machineJiffies();
  const served0 = images.served();
  const replicaCpu0 = await replicaCpu(redis);
  const r0 = await redisSnapshot(redis);
  // r0's own INFO is counted (and its reply sent) after its snapshot was taken.
  mine('info');
  r0.per.forEach((p, i) => (ownReplyBytes[i] += p.replyBytes));
  const t0 = performance.now();

  const peak = { redis: baseline, staging: 0, stagingBlobs: 0, stagingState: 0, inFlight: 0 };
  const peakAt = [...baselineAt];
  let perImage = { bytes: 0, n: 0 };
  const depth: Record<string, number> = { download: 0, caption: 0, filter: 0, write: 0 };
  let samples = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const mem = await Promise.all(nodes.map((n) => infoOf(n, 'memory')));
      mine('info');
      const used = mem.map((m, i) => {
        ownReplyBytes[i] += m.replyBytes;
        peakAt[i] = Math.max(peakAt[i], Number(m.fields.used_memory));
        return Number(m.fields.used_memory);
      });
      peak.redis = Math.max(peak.redis, used.reduce((a, b) => a + b, 0));
      peak.inFlight = Math.max(peak.inFlight, await redis.scard(inFlightKey));
      mine('scard', 1, at[inFlightKey]);
      for (const q of Object.keys(depth)) {
        depth[q] += await redis.llen(waitKey(q));
        mine('llen', 1, at[waitKey(q)]);
      }
      if (o.staging === 'fs') {
        const s = stagingSize(stagingRoot);
        if (s.blobBytes + s.stateBytes > peak.staging) Object.assign(peak, { staging: s.blobBytes + s.stateBytes, stagingBlobs: s.blobBytes, stagingState: s.stateBytes });
        perImage = { bytes: perImage.bytes + s.blobBytes, n: perImage.n + s.blobs };
      } else {
        const b = Number((await redis.get(stagedBytesKey)) ?? 0);
        mine('get', 1, at[stagedBytesKey]);
        if (b > peak.staging) peak.staging = b;
      }
      samples++;
      await sleep(250);
    }
  })();
  let summary: RunSummary;
  let wall: number;
  try {
    summary = await runWatched(loaded, redisUrl);
    wall = (performance.now() - t0) / 1000;
  } finally {
    sampling = false;
    await sampler;
  }
  const r1 = await redisSnapshot(redis);
  const replicaCpuSeconds = (await replicaCpu(redis)) - replicaCpu0;
  const cpu1 = pids.map(procCpu);
  const self1 = process.cpuUsage(self0);
  const mach1 = machineJiffies();
  const served = images.served();

  // Per-stage busy time: the stage timings every shard carries into NNNNN_stats.json.
  const busyMs: Record<string, number> = {};
  for (const f of readdirSync(out).filter((x) => /^\d{5}_stats\.json$/.test(x))) {
    const t = (JSON.parse(readFileSync(join(out, f), 'utf8')) as { timings_ms: Record<string, number> }).timings_ms;
    for (const [k, v] of Object.entries(t)) busyMs[k] = (busyMs[k] ?? 0) + v;
  }
  const slots: Record<string, number> = { download: o.n * loaded.config.pipeline.concurrency.download, caption: o.n * loaded.config.pipeline.concurrency.caption, filter: o.n * loaded.config.pipeline.concurrency.filter };
  const stageBusy = Object.fromEntries(Object.entries(busyMs).map(([k, ms]) => [k, { busySeconds: round(ms / 1000, 1), slotUtilisation: round(ms / 1000 / wall / (slots[k] ?? 1), 2) }]));

  const usedAfter = await usedMemory(redis);
  const keysAfter = await keysPerMaster(redis);
  // Redis memory of what a run leaves and what grows with rows: duplicate index, run keys, stats.
  // SCAN and MEMORY USAGE are about one node: each master in turn.
  const memOf = async (pattern: string, cap = 400) => {
    let keys = 0;
    let sampled = 0;
    let bytes = 0;
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, ks] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 2000);
        cursor = next;
        keys += ks.length;
        for (const k of ks) {
          if (sampled >= cap) break;
          bytes += Number(await node.memory('USAGE', k));
          sampled++;
        }
      } while (cursor !== '0');
    }
    return { keys, bytes: sampled ? (bytes / sampled) * keys : 0, perKey: sampled ? bytes / sampled : 0 };
  };
  const dup = await memOf(`${PREFIX}:run:${runId}:dup:*`);
  const runKeys = await memOf(`${PREFIX}:run:{${runId}}:*`);
  const doneRecord = await memOf(`${PREFIX}:run:{${runId}}:done`);
  const stats = await memOf(`${PREFIX}:stats:*`);

  const byGroup: Record<string, number> = {};
  const rss: Record<string, number> = {};
  workers.forEach((w, i) => {
    byGroup[w.group] = (byGroup[w.group] ?? 0) + (cpu1[i] - cpu0[i]);
    rss[w.group] = Math.max(rss[w.group] ?? 0, peakRssMB(w.child.pid!));
  });
  const redisCpu = r1.cpu - r0.cpu;
  const coordinatorCpu = (self1.user + self1.system) / 1e6;
  const ourCpu = Object.values(byGroup).reduce((a, b) => a + b, 0) + redisCpu + replicaCpuSeconds + coordinatorCpu;
  const commands = r1.commands - r0.commands - Object.values(own).reduce((a, b) => a + b, 0);
  const delta = (c: string) => (r1.calls[c] ?? 0) - (r0.calls[c] ?? 0) - (own[c] ?? 0);
  // Time-driven, not work-driven: the idle workers' polling (measured above) and the
  // coordinator's progress loop and feeder (HGETALL totals/failed, SCARD in-flight, 5-20 Hz).
  const coordinatorPolling = delta('scard') + delta('hgetall');
  const workCommands = commands - idleCommandsPerSec * wall - coordinatorPolling;
  const shards = summary.totalShards;
  const rows = summary.rows;
  const topCommands = Object.entries(r1.calls)
    .map(([c, n]) => [c, n - (r0.calls[c] ?? 0) - (own[c] ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12)
    .map(([c, n]) => ({ command: c, perShard: round(n / shards, 1), perRow: round(n / rows, 3) }));
  const replicas = replicaNodes(redis).length;
  // Each master over the measured run, less what this benchmark sent it. Its own commands' bytes
  // are approximate: the INFO replies exactly, ~40 B per command sent and ~8 B per short reply.
  const perMaster = nodes.map((node, i) => {
    const [a, b] = [r0.per[i], r1.per[i]];
    const ownCommands = Object.values(ownAt[i]).reduce((x, y) => x + y, 0);
    const cmds = b.commands - a.commands - ownCommands;
    const netIn = b.netIn - a.netIn - 40 * ownCommands;
    const netOut = b.netOut - a.netOut - ownReplyBytes[i] - 8 * ownCommands;
    return {
      master: nodeName(node),
      commands: cmds,
      commandsPerSec: round(cmds / wall, 1),
      commandsPerRow: round(cmds / rows, 2),
      idleCommandsPerSec: round(idleAt[i], 1),
      cpuSeconds: round(b.cpu - a.cpu, 2),
      cpuOfOneCore: round((b.cpu - a.cpu) / wall, 3),
      commandExecUsPerRow: round((b.usec - a.usec) / rows, 1),
      netInputBytesPerRow: Math.round(netIn / rows),
      netOutputBytesPerRow: Math.round(netOut / rows),
      ...(replicas ? { replicationOutputBytesPerRow: Math.round((b.replOut - a.replOut) / rows) } : {}),
      usedMemoryMBAfterRun: round(usedAfter[i] / 2 ** 20, 2),
      peakUsedMemoryAboveBaselineMB: round((peakAt[i] - baselineAt[i]) / 2 ** 20, 2),
      keysAfterRun: keysAfter[i],
      topCommands: Object.entries(b.calls)
        .map(([c, n]) => [c, n - (a.calls[c] ?? 0) - (ownAt[i][c] ?? 0)] as const)
        .filter(([, n]) => n > 0)
        .sort((x, y) => y[1] - x[1])
        .slice(0, 6)
        .map(([c, n]) => ({ command: c, perRow: round(n / rows, 3) })),
    };
  });
  const sumOf = (f: 'netInputBytesPerRow' | 'netOutputBytesPerRow' | 'keysAfterRun') => perMaster.reduce((x, m) => x + m[f], 0);
  redis.disconnect();
  rmSync(out, { recursive: true, force: true });

  return {
    label: o.label,
    processesPerStage: o.n,
    workerProcesses: workers.length,
    stagingBackend: o.staging,
    shardRows: o.shardRows,
    loadAvgBefore: load,
    rows,
    shards,
    reconciled: summary.reconciled,
    kept: summary.kept,
    filtered: summary.filtered,
    failed: summary.failed,
    seconds: round(wall, 2),
    rowsPerSec: round(rows / wall, 2),
    stageBusy,
    meanWaitingJobs: Object.fromEntries(Object.entries(depth).map(([k, v]) => [k, round(v / Math.max(1, samples), 2)])),
    cpuSeconds: {
      ...Object.fromEntries(Object.entries(byGroup).map(([k, v]) => [k, round(v, 1)])), redis: round(redisCpu, 1),
      ...(replicas ? { redisReplicas: round(replicaCpuSeconds, 1) } : {}),
      coordinatorAndImageServer: round(coordinatorCpu, 1),
    },
    cpuUtilisation: round(ourCpu / wall / CORES, 2),
    cpuMsPerRow: round((ourCpu / rows) * 1000, 2),
    machineBusy: round((mach1.busy - mach0.busy) / Math.max(1, mach1.total - mach0.total), 2),
    otherProcessesCores: round(Math.max(0, ((mach1.busy - mach0.busy) / Math.max(1, mach1.total - mach0.total)) * CORES - ourCpu / wall), 2),
    redis: {
      commands,
      commandsPerShard: round(commands / shards, 1),
      commandsPerRow: round(commands / rows, 2),
      idleCommandsPerSec: round(idleCommandsPerSec, 1),
      netCommandsPerRow: round((commands - idleCommandsPerSec * wall) / rows, 2),
      coordinatorPollingPerSec: round(coordinatorPolling / wall, 1),
      workCommandsPerShard: round(workCommands / shards, 1),
      workCommandsPerRow: round(workCommands / rows, 2),
      commandExecUsPerRow: round((r1.usec - r0.usec) / rows, 1),
      commandsPerSec: round(commands / wall, 1),
      cpuSeconds: round(redisCpu, 2),
      cpuUsPerRow: round((redisCpu / rows) * 1e6, 1),
      idleCpuPerSec: round(idleCpuPerSec, 4),
      netCpuUsPerRow: round(((redisCpu - idleCpuPerSec * wall) / rows) * 1e6, 1),
      cpuOfOneCore: round(redisCpu / wall, 3),
      peakUsedMemoryAboveBaselineMB: round((peak.redis - baseline) / 2 ** 20, 2),
      // Approximate: the peak less what does not scale with shards in flight (end-of-run sizes).
      perInFlightShardKB: round((peak.redis - baseline - dup.bytes - stats.bytes - runKeys.bytes - doneRecord.bytes) / Math.max(1, peak.inFlight) / 1024, 1),
      // MEMORY USAGE of the bucket strings (bench:dup-index measures used_memory at 10M rows).
      duplicateIndex: { buckets: dup.keys, bytesPerRow: round(dup.bytes / rows, 1), MB: round(dup.bytes / 2 ** 20, 3) },
      runKeysExceptDuplicateIndexKB: round(runKeys.bytes / 1024, 1),
      doneRecordBytesPerShard: round(doneRecord.bytes / Math.max(1, shards), 1),
      statsKeysKB: round(stats.bytes / 1024, 1),
      topCommands,
      masters: nodes.length,
      netInputBytesPerRow: sumOf('netInputBytesPerRow'),
      netOutputBytesPerRow: sumOf('netOutputBytesPerRow'),
      keysAfterRun: sumOf('keysAfterRun'),
      perMaster,
    },
    staging: {
      peakInFlightShards: peak.inFlight,
      peakBytesMB: round(peak.staging / 2 ** 20, 2),
      ...(o.staging === 'fs' ? {
        peakImageBytesMB: round(peak.stagingBlobs / 2 ** 20, 2),
        peakStateBytesMB: round(peak.stagingState / 2 ** 20, 3),
        meanStagedImageBytes: Math.round(perImage.n ? perImage.bytes / perImage.n : 0),
      } : {}),
      bytesPerRowOfInFlightBound: Math.round(peak.staging / (MAX_IN_FLIGHT * o.shardRows)),
    },
    download: { requests: served.requests - served0.requests, meanBytes: Math.round((served.bytes - served0.bytes) / Math.max(1, served.requests - served0.requests)) },
    workerPeakRssMB: rss,
  };
}

type Level = Awaited<ReturnType<typeof measureLevel>>;

/** N=1 with the Redis staging backend, and with 4× larger shards (per-shard vs per-row costs). */
async function runExtras(redisUrl: string, images: Awaited<ReturnType<typeof imageServer>>, model: string, base: Level) {
  const rows = Math.max(2 * 4 * SHARD_ROWS, Math.round(ROWS / 2 / (4 * SHARD_ROWS)) * 4 * SHARD_ROWS);
  const redisStaging = await measureLevel(redisUrl, images, model, { n: 1, label: 'n1-redis-staging', staging: 'redis', shardRows: SHARD_ROWS, rows });
  const bigShards = await measureLevel(redisUrl, images, model, { n: 1, label: 'n1-shards-x4', staging: 'fs', shardRows: 4 * SHARD_ROWS, rows });
  // cost per row = perShard / shardRows + perRow; two shard sizes at N=1 give both.
  const fit = (small: number, big: number) => {
    const perShard = (small - big) / (1 / SHARD_ROWS - 1 / (4 * SHARD_ROWS));
    return { perShard: round(perShard, 1), perRow: round(small - perShard / SHARD_ROWS, 2) };
  };
  return {
    redisStaging,
    bigShards,
    costModel: {
      workCommands: fit(base.redis.workCommandsPerRow, bigShards.redis.workCommandsPerRow),
      commandExecUs: fit(base.redis.commandExecUsPerRow, bigShards.redis.commandExecUsPerRow),
      from: `work commands (idle workers' and coordinator's polling removed) and Redis command execution time per row at ${SHARD_ROWS} and ${4 * SHARD_ROWS} rows per shard, N=1, fs staging`,
    },
    redisStagingExtraPerRow: {
      workCommands: round(redisStaging.redis.workCommandsPerRow - base.redis.workCommandsPerRow, 2),
      commandExecUs: round(redisStaging.redis.commandExecUsPerRow - base.redis.commandExecUsPerRow, 1),
    },
  };
}

/**
 * Until every master has its replica attached and in sync: the cluster is usable before that,
 * but a client that learned the slot map earlier would not know the replicas (their CPU would
 * go unreported) and the first level would pay the initial sync.
 */
async function replicasOnline(url: string): Promise<void> {
  const probe = openRedis(url);
  try {
    await ready(probe);
    for (let i = 0; ; i++) {
      const slots = (await probe.cluster('SLOTS')) as unknown as unknown[][];
      const synced = await Promise.all(masterNodes(probe).map(async (n) => /slave0:.*state=online/.test(await n.info('replication'))));
      if (slots.every((s) => s.length >= 4) && synced.every(Boolean)) return;
      if (i > 300) throw new Error('cluster replicas did not come online within 30 s');
      await sleep(100);
    }
  } finally {
    probe.disconnect();
  }
}

const started = performance.now();
const redisServer = values.cluster
  ? await startRedisCluster({ masters: 3, replicas: 1, aof: false }).then((c) => ({ url: c.url, stop: () => c.dispose() }))
  : await startPrivateRedis();
if (!redisServer) throw new Error('bench:scaling needs redis-server on PATH (apt-get install redis-server)');
let images: Awaited<ReturnType<typeof imageServer>> | null = null;
try {
  if (values.cluster) await replicasOnline(redisServer.url);
  const model = modelDir();
  const pool: Buffer[] = [];
  for (let i = 0; i < 24; i++) pool.push(await photoLike(i + 1));
  images = await imageServer(pool);
  const result: Record<string, unknown> = {
    bench: 'scaling',
    node: process.version,
    cores: CORES,
    loadAvgAtStart: loadavg().map((x) => round(x, 2)),
    model: model.name,
    topology: `per level N: N x worker --stages download,write + N x --stages caption + N x --stages filter, --threads 1 each; one coordinator (runPipeline, workers off) in the benchmark process; ${values.cluster ? 'private Redis Cluster, 3 masters + 3 replicas, redis+cluster:// URL' : 'private redis-server'}`,
    redis: values.cluster ? 'cluster' : 'single',
    rowsPerLevel: ROWS,
    shardRows: SHARD_ROWS,
    maxInFlightShards: MAX_IN_FLIGHT,
    sourceImageMeanBytes: Math.round(pool.reduce((n, b) => n + b.length, 0) / pool.length),
    note: '2 shared cores: other engineers\' tests and a training run use them too (see loadAvgBefore, machineBusy); compare ratios, not absolute rows/s',
  };
  const levels = [];
  const measure = (n: number) => measureLevel(redisServer.url, images!, model.dir, { n, label: `n${n}`, staging: 'fs', shardRows: SHARD_ROWS, rows: ROWS });
  let extras: Record<string, unknown> | null = null;
  for (const n of LEVELS) {
    levels.push(await measure(n));
    // The extras run at N=1, before the worker pool grows.
    if (n === 1 && !values['skip-extras']) extras = await runExtras(redisServer.url, images, model.dir, levels[0]);
  }
  result.levels = levels;
  const base = levels.find((l) => l.processesPerStage === 1) ?? levels[0];
  result.ratios = levels.map((l) => ({
    processesPerStage: l.processesPerStage,
    speedup: round(l.rowsPerSec / base.rowsPerSec, 2),
    efficiency: round(l.rowsPerSec / (l.processesPerStage * base.rowsPerSec), 2),
    efficiencyAgainstCores: round(l.rowsPerSec / (Math.min(l.processesPerStage, CORES) * base.rowsPerSec), 2),
    cpuUtilisation: l.cpuUtilisation,
  }));
  if (extras) result.extras = extras;
  result.totalSeconds = round((performance.now() - started) / 1000, 1);
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  await Promise.all(workers.map(stopWorker));
  await images?.close();
  await redisServer.stop();
  rmSync(work, { recursive: true, force: true });
}
