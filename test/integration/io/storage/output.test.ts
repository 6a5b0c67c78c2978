import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../../../src/core/errors.ts';
import { S3ObjectStore } from '../../../../src/io/storage/object-store.ts';
import { openOutput } from '../../../../src/io/storage/output.ts';
import { closeS3Clients, s3Client } from '../../../../src/io/storage/s3-client.ts';
import { startS3Server, type TestS3 } from '../../../helpers/s3-server.ts';

/** Publishing a shard to S3: whole objects, the parquet last, nothing half-visible when the server dies mid-upload. */
let s3: TestS3;
const local = mkdtempSync(join(tmpdir(), 'capfilt-output-'));
const BUCKET = 'capfilt-publish';
beforeAll(async () => {
  s3 = await startS3Server();
  await s3.createBucket(BUCKET);
});
afterAll(async () => {
  closeS3Clients();
  await s3?.dispose();
  rmSync(local, { recursive: true, force: true });
});

const big = Buffer.alloc(12 * 1024 * 1024);
for (let i = 0; i < big.length; i += 1024) big.writeUInt32LE(i, i);

/** A shard as the writers leave it: a tar over the part size (multipart), stats, parquet. */
async function writeShard(dir: string, name: string, extra: Record<string, string> = {}): Promise<void> {
  await writeFile(join(dir, `${name}.tar`), big);
  await writeFile(join(dir, `${name}_stats.json`), '{"count":1}');
  await writeFile(join(dir, `${name}.parquet`), 'PAR1 fake body PAR1');
  for (const [n, body] of Object.entries(extra)) {
    await mkdir(join(dir, n, '..'), { recursive: true });
    await writeFile(join(dir, n), body);
  }
}

/** Every request the cached client sends: command name and key, in order; `onSend` may act on one. */
function watch(onSend?: (command: string, input: { Key?: string; PartNumber?: number }) => void) {
  const sent: string[] = [];
  const client = s3Client(s3.options);
  const name = `watch-${Math.random()}`;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { Key?: string; PartNumber?: number };
      sent.push(`${context.commandName}:${input.Key ?? ''}${input.PartNumber ? `#${input.PartNumber}` : ''}`);
      onSend?.(context.commandName ?? '', input);
      return next(args);
    },
    { step: 'initialize', name },
  );
  return { sent, stop: () => client.middlewareStack.remove(name) };
}

describe('OutputLocation on S3', () => {
  it('uploads a shard data first and the parquet last, and removes what an earlier attempt left', async () => {
    const out = openOutput(`s3://${BUCKET}/order/`, s3.options);
    const store = new S3ObjectStore(`s3://${BUCKET}/order/`, s3.options);
    await out.withShard('00007', (dir) => writeShard(dir, '00007', { 'filtered/00007.tar': 'old filtered' }));
    expect((await store.list()).map((o) => o.name)).toEqual(['00007.parquet', '00007.tar', '00007_stats.json', 'filtered/00007.tar']);
    const w = watch();
    try {
      await out.withShard('00007', (dir) => writeShard(dir, '00007'));
    } finally {
      w.stop();
    }
    const uploads = w.sent.filter((s) => /^(PutObject|CompleteMultipartUpload)Command/.test(s)).map((s) => s.split(':')[1].replace('order/', ''));
    expect(uploads).toEqual(['00007.tar', '00007_stats.json', '00007.parquet']);
    // The retried write had no filtered rows: the earlier attempt's filtered tar is gone.
    expect((await store.list()).map((o) => o.name)).toEqual(['00007.parquet', '00007.tar', '00007_stats.json']);
    expect((await store.read('00007.tar')).equals(big)).toBe(true);
  });

  it('a server killed mid-upload leaves no part of the shard visible; the retried write publishes it whole', async () => {
    const url = `s3://${BUCKET}/killed/`;
    const out = openOutput(url, s3.options);
    const store = new S3ObjectStore(url, s3.options);
    let killed: Promise<void> | null = null;
    const w = watch((command, input) => {
      // Part 2 of the tar's multipart upload: part 1 is stored, the upload is not complete.
      if (command === 'UploadPartCommand' && input.PartNumber === 2 && !killed) killed = s3.stop('SIGKILL');
    });
    const err = await out.withShard('00003', (dir) => writeShard(dir, '00003')).catch((e: unknown) => e).finally(w.stop);
    expect(killed).not.toBeNull();
    await killed;
    expect(isCapfiltError(err, 'S3_UNAVAILABLE'), String(err)).toBe(true);
    await s3.start();
    // Nothing of the shard is visible: not the tar (its multipart upload never completed), not the parquet.
    expect(await store.list()).toEqual([]);
    expect(await store.size('00003.parquet')).toBeNull();

    await out.withShard('00003', (dir) => writeShard(dir, '00003'));
    expect((await store.list()).map((o) => [o.name, o.size])).toEqual([['00003.parquet', 19], ['00003.tar', big.length], ['00003_stats.json', 11]]);
    expect((await store.read('00003.tar')).equals(big)).toBe(true);
  });

  it('withShard({ fetch }) hands over the stored files and uploads only what changed', async () => {
    const url = `s3://${BUCKET}/rewrite/`;
    const out = openOutput(url, s3.options);
    await out.withShard('00001', (dir) => writeShard(dir, '00001'));
    const w = watch();
    try {
      await out.withShard('00001', async (dir) => {
        writeFileSync(join(dir, '00001_stats.json'), '{"count":2}');
      }, { fetch: true });
    } finally {
      w.stop();
    }
    expect(w.sent.filter((s) => /^(PutObject|CompleteMultipartUpload|UploadPart)Command/.test(s))).toEqual([`PutObjectCommand:rewrite/00001_stats.json`]);
    const store = new S3ObjectStore(url, s3.options);
    expect((await store.read('00001_stats.json')).toString()).toBe('{"count":2}');
    expect((await store.read('00001.tar')).equals(big)).toBe(true);
  });
});
