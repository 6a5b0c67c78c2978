import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort } from '../../src/workers/private-redis.ts';
import type { S3Options } from '../../src/io/storage/s3-client.ts';

/**
 * A real S3-compatible server for tests: s3rver (npm) as a child process on a free loopback port
 * with its own data folder. A child, not in-process, so a test can SIGKILL it mid-upload and start
 * it again on the same port and folder (objects already complete survive, as on a real server).
 *
 * Why s3rver and not Debian's radosgw: s3rver is one npm devDependency that starts in ~0.3 s with
 * no cluster behind it; radosgw needs a running Ceph cluster (monitors, OSDs) to store anything.
 */
export interface TestS3 {
  endpoint: string;
  port: number;
  dir: string;
  /** Config slice pointing at this server. */
  options: S3Options;
  /** Environment for child processes (credentials s3rver accepts, the endpoint). */
  env: Record<string, string>;
  client: S3Client;
  createBucket(name: string): Promise<void>;
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  start(): Promise<void>;
  dispose(): Promise<void>;
}

// s3rver's built-in account; it checks signatures made with it.
export const S3RVER_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

export async function startS3Server(): Promise<TestS3> {
  // The SDK reads credentials from the environment (the standard chain), as in production.
  Object.assign(process.env, S3RVER_CREDENTIALS, { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' });
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-s3-'));
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const bin = join(dirname(createRequire(import.meta.url).resolve('s3rver/package.json')), 'bin', 's3rver.js');
  let child: ChildProcess | null = null;
  const killSync = () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killSync);
  const start = async () => {
    const c = spawn(process.execPath, [bin, '-d', dir, '-a', '127.0.0.1', '-p', String(port), '--silent', '--no-vhost-buckets'], { stdio: 'ignore' });
    child = c;
    for (let i = 0; i < 200; i++) {
      if (c.exitCode !== null) throw new Error(`s3rver exited with ${c.exitCode} on port ${port}`);
      if (await listening(port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`s3rver on port ${port} did not start`);
  };
  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM') => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill(signal);
    await exited;
  };
  await start();
  const options: S3Options = { endpoint, region: 'us-east-1', forcePathStyle: true, partSizeMiB: 5, uploadConcurrency: 2, maxAttempts: 3 };
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
  return {
    endpoint, port, dir, options, client, start, stop,
    env: { ...S3RVER_CREDENTIALS, AWS_ENDPOINT_URL: endpoint, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    createBucket: async (name) => {
      await client.send(new CreateBucketCommand({ Bucket: name }));
    },
    dispose: async () => {
      client.destroy();
      await stop('SIGKILL');
      process.removeListener('exit', killSync);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
