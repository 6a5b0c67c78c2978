import { join, resolve } from 'node:path';
import type { RedisClient } from '../../core/redis.ts';
import type { CapfiltConfig } from '../../config/schema.ts';
import { CapfiltError } from '../../core/errors.ts';
import { FsStagingStore } from './fs.ts';
import { RedisStagingStore } from './redis.ts';
import type { StagingStore } from './types.ts';

export type { StagingStore } from './types.ts';

/** The staging folder of the fs backend: staging.dir, or <output.dir>/.staging. */
export function stagingDir(config: CapfiltConfig): string | null {
  if (config.staging.dir) return resolve(config.staging.dir);
  return config.output.dir ? join(resolve(config.output.dir), '.staging') : null;
}

export function openStagingStore(config: CapfiltConfig, redis: RedisClient): StagingStore {
  if (config.staging.backend === 'redis') return new RedisStagingStore(redis, config.redis.prefix);
  const dir = stagingDir(config);
  if (!dir) throw new CapfiltError('CONFIG_INVALID', 'option staging.dir: expected a folder (or output.dir to derive <output.dir>/.staging) for staging.backend fs, got null');
  return new FsStagingStore(dir);
}

/**
 * Checks at the start of a run (or of a worker given --staging-dir) that the fs staging folder
 * can be created and written, so an unusable one stops it with STAGING_UNAVAILABLE before any
 * work. The redis backend has nothing to check here: Redis itself is checked when it connects.
 */
export async function checkStaging(config: CapfiltConfig): Promise<void> {
  if (config.staging.backend !== 'fs') return;
  const dir = stagingDir(config);
  if (dir) await new FsStagingStore(dir).probe();
}
