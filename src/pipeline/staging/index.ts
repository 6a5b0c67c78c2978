import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { RedisClient } from '../../core/redis.ts';
import type { CapfiltConfig } from '../../config/schema.ts';
import { CapfiltError } from '../../core/errors.ts';
import { asPrefix, formatS3Url, isS3Url, joinS3, parseS3Url } from '../../io/storage/s3-url.ts';
import { FsStagingStore } from './fs.ts';
import { RedisStagingStore } from './redis.ts';
import { S3StagingStore } from './s3.ts';
import type { StagingStore } from './types.ts';

export type { StagingStore } from './types.ts';

/**
 * Where the fs or s3 backend stages: staging.dir, or <output.dir>/.staging (a folder; for the s3
 * backend and an s3:// output.dir, that prefix in the bucket; for fs and an s3:// output.dir, a
 * folder in this host's temp dir). null for the redis backend, which needs no place, and
 * when neither option is set. A location of the wrong kind for the backend (an s3:// prefix for
 * fs, a folder for s3) is STAGING_BACKEND_MISMATCH, saying what to set.
 */
export function stagingDir(config: CapfiltConfig): string | null {
  const { backend, dir } = config.staging;
  if (backend === 'redis') return null;
  const out = config.output.dir;
  const derived = !dir;
  // An s3:// output with the default fs backend stages on this host's disk (one-host runs need no
  // setting); the s3 backend derives <output.dir>/.staging/ in the bucket.
  const derivedLocation = () => {
    if (out === null) return null;
    if (!isS3Url(out)) return join(resolve(out), '.staging');
    return backend === 'fs' ? join(tmpdir(), 'capfilt-staging') : formatS3Url(joinS3(asPrefix(parseS3Url(out)), '.staging/'));
  };
  const location = dir ?? derivedLocation();
  if (location === null) return null;
  const from = derived ? `staging.dir is null, so <output.dir>/.staging is used: ${location}` : `staging.dir is ${location}`;
  if (backend === 'fs' && isS3Url(location)) {
    throw new CapfiltError('STAGING_BACKEND_MISMATCH', `option staging.backend: fs stages in a local folder, but ${from}; set staging.backend to s3 (--staging s3) to stage in the bucket, or staging.dir to a local folder (--staging-dir)`, { backend, dir: location });
  }
  if (backend === 's3' && !isS3Url(location)) {
    throw new CapfiltError('STAGING_BACKEND_MISMATCH', `option staging.backend: s3 stages under an s3://bucket/prefix/, but ${from}; set staging.dir to an s3:// prefix (--staging-dir s3://bucket/staging/), or staging.backend to fs`, { backend, dir: location });
  }
  if (backend === 's3') return formatS3Url(asPrefix(parseS3Url(location)));
  return resolve(location);
}

export function openStagingStore(config: CapfiltConfig, redis: RedisClient): StagingStore {
  if (config.staging.backend === 'redis') return new RedisStagingStore(redis, config.redis.prefix);
  const dir = stagingDir(config);
  if (!dir) {
    const what = config.staging.backend === 's3' ? 'an s3:// prefix (or an s3:// output.dir to derive <output.dir>/.staging/)' : 'a folder (or output.dir to derive <output.dir>/.staging)';
    throw new CapfiltError('CONFIG_INVALID', `option staging.dir: expected ${what} for staging.backend ${config.staging.backend}, got null`);
  }
  return config.staging.backend === 's3' ? new S3StagingStore(dir, config.s3) : new FsStagingStore(dir);
}

/**
 * Probes one staging location as what it is: an s3:// prefix with a put and delete, a folder
 * with a write and read back. For a worker given --staging-dir, whose runs bring their backend.
 */
export async function probeStagingDir(dir: string, config: Pick<CapfiltConfig, 's3'>): Promise<void> {
  if (isS3Url(dir)) await new S3StagingStore(dir, config.s3).probe();
  else await new FsStagingStore(dir).probe();
}

/**
 * Checks at the start of a run that the staging location can be used, so an unusable one stops
 * it before any work: the fs folder is created and written (STAGING_UNAVAILABLE), the s3 prefix
 * gets a small object put and deleted (S3_NO_SUCH_BUCKET, S3_ACCESS_DENIED, S3_UNAVAILABLE), and
 * a location of the wrong kind is STAGING_BACKEND_MISMATCH. The redis backend has nothing to
 * check here: Redis itself is checked when it connects.
 */
export async function checkStaging(config: CapfiltConfig): Promise<void> {
  const dir = stagingDir(config);
  if (dir) await probeStagingDir(dir, config);
}
