import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../../../src/core/errors.ts';
import { stagingDir } from '../../../../src/pipeline/staging/index.ts';
import { testConfig } from '../../../helpers/config.ts';

const config = (values: Record<string, unknown>) => testConfig(values).config;

function mismatch(values: Record<string, unknown>): Error {
  let err: unknown = null;
  try {
    stagingDir(config(values));
  } catch (e) {
    err = e;
  }
  expect(isCapfiltError(err, 'STAGING_BACKEND_MISMATCH'), String(err)).toBe(true);
  return err as Error;
}

describe('stagingDir: where each backend stages', () => {
  it('fs: staging.dir, or <output.dir>/.staging, as absolute folders', () => {
    expect(stagingDir(config({ 'staging.dir': 'stage' }))).toBe(resolve('stage'));
    expect(stagingDir(config({ 'output.dir': 'out' }))).toBe(join(resolve('out'), '.staging'));
    expect(stagingDir(config({}))).toBeNull();
    // An s3:// output staged by one host needs no setting: this host's temp dir.
    expect(stagingDir(config({ 'output.dir': 's3://b-1/out' }))).toBe(join(tmpdir(), 'capfilt-staging'));
  });

  it('s3: staging.dir as a prefix, or <output.dir>/.staging/ of an s3:// output.dir', () => {
    expect(stagingDir(config({ 'staging.backend': 's3', 'staging.dir': 's3://b-1/stage', 'output.dir': 'out' }))).toBe('s3://b-1/stage/');
    expect(stagingDir(config({ 'staging.backend': 's3', 'output.dir': 's3://b-1/runs/a' }))).toBe('s3://b-1/runs/a/.staging/');
    expect(stagingDir(config({ 'staging.backend': 's3', 'output.dir': 's3://b-1' }))).toBe('s3://b-1/.staging/');
  });

  it('redis stages nowhere on disk or in a bucket', () => {
    expect(stagingDir(config({ 'staging.backend': 'redis', 'output.dir': 'out' }))).toBeNull();
  });

  it('a location of the wrong kind is STAGING_BACKEND_MISMATCH saying what to set', () => {
    expect(mismatch({ 'staging.dir': 's3://b-1/stage/' }).message).toMatch(/staging\.dir is s3:\/\/b-1\/stage\/; set staging\.backend to s3 .*or staging\.dir to a local folder/);
    expect(mismatch({ 'staging.backend': 's3', 'staging.dir': 'stage' }).message).toMatch(/staging\.dir is stage; set staging\.dir to an s3:\/\/ prefix .*or staging\.backend to fs/);
    expect(mismatch({ 'staging.backend': 's3', 'output.dir': 'out' }).message).toMatch(/<output\.dir>\/\.staging is used: .*out[/\\]\.staging; set staging\.dir to an s3:\/\/ prefix/);
  });

  it('an s3:// staging.dir that is not a bucket URL is S3_URL_INVALID', () => {
    let err: unknown = null;
    try {
      stagingDir(config({ 'staging.backend': 's3', 'staging.dir': 's3://Bad_Bucket/x' }));
    } catch (e) {
      err = e;
    }
    expect(isCapfiltError(err, 'S3_URL_INVALID'), String(err)).toBe(true);
  });
});
