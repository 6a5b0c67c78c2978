import { CapfiltError } from '../../core/errors.ts';

/** A bucket and a key (or key prefix) inside it: what an s3://bucket/key URL names. */
export interface S3Location {
  bucket: string;
  /** The key, or the key prefix of a "folder" (then ending in "/", or empty for the whole bucket). */
  key: string;
}

export function isS3Url(s: string | null | undefined): s is string {
  return typeof s === 'string' && /^s3:\/\//i.test(s);
}

// S3's own bucket rule (3–63 lowercase letters, digits, dots, hyphens), so a typo fails here, not as an opaque 400.
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function parseS3Url(url: string): S3Location {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/i.exec(url);
  if (!m || !BUCKET.test(m[1])) throw new CapfiltError('S3_URL_INVALID', `${url}: expected s3://bucket/key with a bucket name of 3–63 lowercase letters, digits, "." or "-"`, { url });
  return { bucket: m[1], key: m[2] ?? '' };
}

/** The location as a "folder": its key ends in "/" (or is empty), so names join below it. */
export function asPrefix(loc: S3Location): S3Location {
  return { bucket: loc.bucket, key: loc.key === '' || loc.key.endsWith('/') ? loc.key : `${loc.key}/` };
}

export function formatS3Url(loc: S3Location): string {
  return `s3://${loc.bucket}/${loc.key}`;
}

/** `name` ("00001.parquet", "filtered/00001.tar") below a prefix location. */
export function joinS3(loc: S3Location, name: string): S3Location {
  return { bucket: loc.bucket, key: `${asPrefix(loc).key}${name.replace(/^\/+/, '')}` };
}
