import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redisReachable } from './connection.ts';

/**
 * A private redis-server for single-machine runs where no Redis was configured: a temporary
 * directory, a free loopback port, no persistence, `noeviction` (BullMQ's requirement), and
 * stopped with the process. Returns null when no redis-server binary is on PATH.
 */
export interface PrivateRedis {
  url: string;
  stop(): Promise<void>;
}

export function redisServerOnPath(): string | null {
  const r = spawnSync('/bin/sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null;
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startPrivateRedis(): Promise<PrivateRedis | null> {
  const bin = redisServerOnPath();
  if (!bin) return null;
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-redis-'));
  const port = await freePort();
  const child: ChildProcess = spawn(bin, ['--bind', '127.0.0.1', '--port', String(port), '--dir', dir, '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction', '--protected-mode', 'yes'], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  const stopSync = () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stopSync);
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) break;
    if (await redisReachable(url, 300)) {
      return {
        url,
        stop: async () => {
          process.removeListener('exit', stopSync);
          if (child.exitCode === null) {
            const exited = new Promise<void>((r) => child.once('exit', () => r()));
            child.kill('SIGTERM');
            await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
          }
          stopSync();
        },
      };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  stopSync();
  return null;
}
