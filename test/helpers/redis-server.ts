import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redisReachable } from '../../src/workers/connection.ts';
import { freePort } from '../../src/workers/private-redis.ts';

/**
 * A redis-server child owned by one chaos scenario: its own temp dir and loopback port, AOF on
 * (as docker-compose.yml runs Redis), `noeviction`. It can be killed and started again on the
 * same port and dir, so that clients reconnect to a Redis that reloaded its AOF.
 */
export interface ChaosRedis {
  url: string;
  port: number;
  dir: string;
  /** Stops the server: SIGTERM (Redis flushes the AOF and exits) or SIGKILL (a crash). */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Starts it again on the same port and dir (AOF reloaded). */
  start(): Promise<void>;
  /** Stops it and removes its dir. */
  dispose(): Promise<void>;
}



export async function startChaosRedis(o: { appendfsync?: 'always' | 'everysec' } = {}): Promise<ChaosRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-chaos-redis-'));
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | null = null;
  const args = [
    '--bind', '127.0.0.1', '--port', String(port), '--dir', dir, '--save', '',
    '--appendonly', 'yes', '--appendfsync', o.appendfsync ?? 'everysec', '--maxmemory-policy', 'noeviction',
  ];
  const killSync = () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killSync);
  const start = async () => {
    const c = spawn('redis-server', args, { stdio: 'ignore' });
    child = c;
    for (let i = 0; i < 200; i++) {
      if (c.exitCode !== null) throw new Error(`redis-server exited with ${c.exitCode} on port ${port}`);
      // Redis answers LOADING while it replays the AOF; redisReachable waits for a real PONG.
      if (await redisReachable(url, 500)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server on port ${port} did not answer`);
  };
  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM') => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill(signal);
    await exited;
  };
  await start();
  return {
    url, port, dir, start, stop,
    dispose: async () => {
      await stop('SIGKILL');
      process.removeListener('exit', killSync);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
