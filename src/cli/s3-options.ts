import type { Command } from 'commander';
import { loadConfig } from '../config/load.ts';
import type { CapfiltConfig } from '../config/schema.ts';

/**
 * The S3 options of a command that reads or writes an output by location alone (report,
 * rethreshold, retry-failed): config/default.yaml < --config < CAPFILT_S3_* < --s3-endpoint.
 */
export function addS3Flags(cmd: Command): Command {
  return cmd
    .option('--s3-endpoint <url>', 'S3-compatible server for s3:// outputs (MinIO, Ceph, R2), default AWS_ENDPOINT_URL or AWS (s3.endpoint)')
    .option('--config <file>', 'YAML/JSON config file whose s3 section applies (default: env CAPFILT_CONFIG)');
}

export function s3OptionsFrom(flags: { s3Endpoint?: string; config?: string }): CapfiltConfig['s3'] {
  return loadConfig({
    file: flags.config ?? process.env.CAPFILT_CONFIG ?? null,
    env: process.env,
    overrides: flags.s3Endpoint ? [{ path: 's3.endpoint', value: flags.s3Endpoint, source: '--s3-endpoint' }] : [],
  }).config.s3;
}
