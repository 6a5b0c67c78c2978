import { appendFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { cli, type CliProcess } from './cli.ts';
import { startFixture, type PipelineFixture } from './pipeline-fixture.ts';
import { startChaosRedis, type ChaosRedis } from './redis-server.ts';
import { t1ModelDir } from './t1-model.ts';

/**
 * Shared pieces of the chaos scenarios: the environment of a fast run (small images, short
 * locks so that killed workers' jobs are taken over within seconds), the model folder (the
 * bundled demo model, or the t1 parity checkpoints when it is absent), child process
 * bookkeeping, and the one summary line each fault prints.
 */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The demo model when it is in the tree, else the t1 checkpoints laid out as a model folder. */
export function modelDir(): string {
  const demo = join(ROOT, 'models', 'demo');
  if (existsSync(join(demo, 'captioner', 'model.safetensors')) && existsSync(join(demo, 'filter', 'model.safetensors'))) return demo;
  return t1ModelDir();
}

/** What a scenario file runs against: its own Redis, the image server and input, the model, its processes. */
export interface ChaosScenario {
  redis: ChaosRedis;
  fx: PipelineFixture;
  model: string;
  kids: Children;
}

/**
 * Registers the hooks that start a scenario file's Redis, fixture (`rows` input rows) and model
 * folder before its tests and kill its processes and remove them all after; the returned object
 * is filled in by the time the tests run.
 */
export function useChaosScenario(rows: number): ChaosScenario {
  const sc = { kids: new Children() } as ChaosScenario;
  beforeAll(async () => {
    sc.redis = await startChaosRedis();
    sc.fx = await startFixture(rows);
    sc.model = modelDir();
  });
  afterAll(async () => {
    await sc.kids.killAll();
    await sc.fx?.close();
    await sc.redis?.dispose();
    if (sc.model && !sc.model.endsWith(join('models', 'demo'))) rmSync(sc.model, { recursive: true, force: true });
  });
  return sc;
}

export function runEnv(redisUrl: string, prefix: string, model: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: redisUrl,
    CAPFILT_REDIS_PREFIX: prefix,
    CAPFILT_REDIS_AUTO_START: 'false',
    CAPFILT_DOWNLOAD_SSRF_ALLOWLIST: '127.0.0.1',
    CAPFILT_DOWNLOAD_RETRIES: '0',
    CAPFILT_DOWNLOAD_CONCURRENCY: '8',
    CAPFILT_IMAGE_SIZE: '64',
    CAPFILT_MODELS_CAPTIONER: join(model, 'captioner'),
    CAPFILT_MODELS_FILTER: join(model, 'filter'),
    CAPFILT_MODELS_THREADS: '1',
    CAPFILT_CAPTION_MAX_LENGTH: '12',
    CAPFILT_CAPTION_MIN_LENGTH: '4',
    CAPFILT_PIPELINE_LOCK_DURATION_MS: '4000',
    CAPFILT_PIPELINE_STALLED_INTERVAL_MS: '1000',
    // Repeated kills may stall one job many times; it must be retried, not failed for good.
    CAPFILT_PIPELINE_MAX_STALLED_COUNT: '1000',
    CAPFILT_PIPELINE_BACKOFF_MS: '200',
    CAPFILT_LOG_LEVEL: 'info',
    ...extra,
  };
}

export class Children {
  readonly all: CliProcess[] = [];

  start(args: string[], env: Record<string, string>): CliProcess {
    const c = cli(args, env);
    this.all.push(c);
    return c;
  }

  alive(): CliProcess[] {
    return this.all.filter((c) => c.child.exitCode === null && c.child.signalCode === null);
  }

  async killAll(): Promise<void> {
    await Promise.all(
      this.alive().map((c) => {
        c.child.kill('SIGKILL');
        return c.exited;
      }),
    );
  }
}

export function lastJson(p: CliProcess): Record<string, unknown> | null {
  const lines = p.stdout().trim().split('\n');
  try {
    return JSON.parse(lines[lines.length - 1]) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/**
 * One line per fault: what was injected, how many times, and what came out. Appended to the
 * file named by CAPFILT_CHAOS_SUMMARY (set by the chaos global setup, which prints the lines
 * once all scenarios ran), and printed at once as well.
 */
export function reportFault(fault: string, fields: Record<string, string | number | boolean>): void {
  const line = `CHAOS ${fault}: ${Object.entries(fields).map(([k, v]) => `${k}=${v}`).join(' ')}`;
  process.stdout.write(`${line}\n`);
  const file = process.env.CAPFILT_CHAOS_SUMMARY;
  if (file) appendFileSync(file, `${line}\n`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Deterministic random numbers (mulberry32), so a failing schedule can be replayed by seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
