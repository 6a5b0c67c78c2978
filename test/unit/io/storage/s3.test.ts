import { describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../../../src/core/errors.ts';
import { s3Endpoint, s3Error, s3ErrorCode } from '../../../../src/io/storage/s3-client.ts';
import { asPrefix, formatS3Url, isS3Url, joinS3, parseS3Url } from '../../../../src/io/storage/s3-url.ts';
import { resolveLocation } from '../../../../src/io/storage/output.ts';

describe('s3:// URLs', () => {
  it('parse into bucket and key, join names below a prefix, and print back', () => {
    expect(parseS3Url('s3://my-bucket/runs/a/')).toEqual({ bucket: 'my-bucket', key: 'runs/a/' });
    expect(parseS3Url('s3://my-bucket')).toEqual({ bucket: 'my-bucket', key: '' });
    expect(asPrefix(parseS3Url('s3://my-bucket/runs/a'))).toEqual({ bucket: 'my-bucket', key: 'runs/a/' });
    expect(formatS3Url(joinS3(parseS3Url('s3://my-bucket/runs/a'), 'filtered/00001.tar'))).toBe('s3://my-bucket/runs/a/filtered/00001.tar');
    expect(formatS3Url(joinS3(parseS3Url('s3://my-bucket'), '00001.parquet'))).toBe('s3://my-bucket/00001.parquet');
    expect(isS3Url('S3://b-1/x')).toBe(true);
    expect(isS3Url('/data/s3://x')).toBe(false);
    expect(resolveLocation('s3://b-1/out/')).toBe('s3://b-1/out/');
  });

  it('refuse bucket names S3 would refuse, with S3_URL_INVALID', () => {
    for (const bad of ['s3://', 's3://ab/x', 's3://Upper/x', 's3://under_score/x', `s3://${'a'.repeat(64)}/x`, 's3://-lead/x']) {
      let err: unknown = null;
      try {
        parseS3Url(bad);
      } catch (e) {
        err = e;
      }
      expect(isCapfiltError(err, 'S3_URL_INVALID'), bad).toBe(true);
    }
  });
});

describe('S3 failures as catalogue codes', () => {
  const sdk = (name: string, status?: number) => Object.assign(new Error(`${name} happened`), { name, $metadata: { httpStatusCode: status } });

  it('maps what the SDK throws to retry-or-not codes', () => {
    expect(s3ErrorCode(sdk('NoSuchBucket', 404))).toBe('S3_NO_SUCH_BUCKET');
    expect(s3ErrorCode(sdk('NoSuchKey', 404))).toBe('S3_NO_SUCH_KEY');
    expect(s3ErrorCode(sdk('NotFound', 404))).toBe('S3_NO_SUCH_KEY');
    for (const n of ['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'CredentialsProviderError']) expect(s3ErrorCode(sdk(n, 403))).toBe('S3_ACCESS_DENIED');
    expect(s3ErrorCode(sdk('Forbidden', 403))).toBe('S3_ACCESS_DENIED');
    expect(s3ErrorCode(sdk('SlowDown', 503))).toBe('S3_UNAVAILABLE');
    expect(s3ErrorCode(sdk('InternalError', 500))).toBe('S3_UNAVAILABLE');
    expect(s3ErrorCode(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe('S3_UNAVAILABLE');
  });

  it('names the operation and the URL, keeps the cause, and passes a coded error through', () => {
    const e = s3Error(sdk('NoSuchKey', 404), 'get', 's3://b-1/x.parquet');
    expect(e.code).toBe('S3_NO_SUCH_KEY');
    expect(e.message).toBe('S3_NO_SUCH_KEY: get s3://b-1/x.parquet: NoSuchKey happened (NoSuchKey, HTTP 404)');
    expect(e.details).toMatchObject({ url: 's3://b-1/x.parquet', op: 'get', status: 404 });
    expect(s3Error(e, 'put', 's3://b-1/y')).toBe(e);
  });

  it('takes the endpoint from the option, else the AWS SDK variables, else AWS itself', () => {
    expect(s3Endpoint({ endpoint: 'http://minio:9000' }, { AWS_ENDPOINT_URL: 'http://other:1' })).toBe('http://minio:9000');
    expect(s3Endpoint({ endpoint: null }, { AWS_ENDPOINT_URL_S3: 'http://s3only:1', AWS_ENDPOINT_URL: 'http://all:1' })).toBe('http://s3only:1');
    expect(s3Endpoint({ endpoint: null }, { AWS_ENDPOINT_URL: 'http://all:1' })).toBe('http://all:1');
    expect(s3Endpoint({ endpoint: null }, {})).toBeNull();
  });
});
