import { S3Client } from '@aws-sdk/client-s3';
import type { CapfiltConfig } from '../../config/schema.ts';
import { CapfiltError, type ErrorCode } from '../../core/errors.ts';

export type S3Options = CapfiltConfig['s3'];

/** The endpoint in effect: s3.endpoint, else the AWS SDK's own variables, else AWS (null). */
export function s3Endpoint(o: Pick<S3Options, 'endpoint'>, env: NodeJS.ProcessEnv = process.env): string | null {
  return o.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL ?? null;
}

const clients = new Map<string, S3Client>();

/**
 * One S3 client per distinct option set in a process (each holds a keep-alive agent). Credentials
 * come from the SDK's default chain only: environment, shared files, SSO, instance/container roles.
 */
export function s3Client(o: S3Options): S3Client {
  const endpoint = s3Endpoint(o);
  const id = JSON.stringify({ ...o, endpoint });
  let c = clients.get(id);
  if (!c) {
    // The SDK prints a 9-line warning on Node 20 that its releases after January 2027 need Node 22;
    // capfilt pins a release that supports Node 20 (package.json), so it is no news to a user.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    c = new S3Client({
      ...(endpoint ? { endpoint } : {}),
      region: o.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      forcePathStyle: o.forcePathStyle ?? endpoint !== null,
      maxAttempts: o.maxAttempts,
      // Non-AWS servers (MinIO before 2025, Ceph, s3rver) reject the SDK's default streamed
      // CRC32 trailers; send checksums only where an operation requires one.
      ...(endpoint ? { requestChecksumCalculation: 'WHEN_REQUIRED' as const, responseChecksumValidation: 'WHEN_REQUIRED' as const } : {}),
      // A dead server must fail a request (then retried) rather than hold a shard for ever.
      requestHandler: { connectionTimeout: 5000, requestTimeout: 120_000 },
    });
    clients.set(id, c);
  }
  return c;
}

/** Closes every client this process opened (their sockets would keep a CLI alive). */
export function closeS3Clients(): void {
  for (const c of clients.values()) c.destroy();
  clients.clear();
}

interface SdkError {
  name?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
  message?: string;
}

const DENIED = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'CredentialsProviderError', 'ExpiredToken', 'InvalidToken', 'AllAccessDisabled']);

/** The catalogue code of an SDK failure: what a worker should do about it (retry or not). */
export function s3ErrorCode(e: unknown): ErrorCode {
  const err = (e ?? {}) as SdkError;
  const status = err.$metadata?.httpStatusCode;
  if (err.name === 'NoSuchBucket') return 'S3_NO_SUCH_BUCKET';
  if (err.name === 'NoSuchKey' || (err.name === 'NotFound' && status === 404)) return 'S3_NO_SUCH_KEY';
  if ((err.name && DENIED.has(err.name)) || status === 401 || status === 403) return 'S3_ACCESS_DENIED';
  return 'S3_UNAVAILABLE';
}

/** Wraps an SDK failure of `op` on `url` in its coded error; a CapfiltError passes unchanged. */
export function s3Error(e: unknown, op: string, url: string): CapfiltError {
  if (e instanceof CapfiltError) return e;
  const err = (e ?? {}) as SdkError;
  const status = err.$metadata?.httpStatusCode;
  const what = [err.name, err.code, status ? `HTTP ${status}` : null].filter(Boolean).join(', ');
  return new CapfiltError(s3ErrorCode(e), `${op} ${url}: ${err.message || what || String(e)}${what && err.message ? ` (${what})` : ''}`, { url, op, ...(status ? { status } : {}) }, { cause: e });
}
