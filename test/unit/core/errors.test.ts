import { describe, expect, it } from 'vitest';
import {
  CapfiltError, ERROR_CODES, SYSTEM_ERROR_KINDS, codeAndText, codesOfKind, describeError, isCapfiltError, retryKindOf, systemErrorOf,
} from '../../../src/core/errors.ts';
import { DECISION_CODES } from '../../../src/pipeline/decisions.ts';
import { RETRYABLE_REASONS } from '../../../src/run/retry-failed.ts';
import { documentedTables, errorTables } from '../../../tools/errors-doc.ts';

describe('error catalogue', () => {
  it('has unique upper-snake codes with a description and a retry kind each', () => {
    for (const [code, e] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(/^[A-Z][A-Z0-9_]+$/);
      expect(e.message.length).toBeGreaterThan(5);
      expect(['transient', 'permanent']).toContain(e.retry);
    }
    // Decision codes share the `reason` column: a code means one thing in both tables.
    for (const [code, text] of Object.entries(DECISION_CODES)) {
      if (code in ERROR_CODES) expect(ERROR_CODES[code as keyof typeof ERROR_CODES].message).toBe(text);
    }
  });

  it('pins the retry kind of the codes that stage retries and retry-failed depend on', () => {
    // Worker jobs that fail with these are not retried (a retry cannot help).
    for (const c of ['CONFIG_INVALID', 'STAGING_STATE_MISSING', 'STAGING_BLOB_MISSING', 'MODEL_DIR_INVALID', 'WEIGHTS_MISSING_KEYS', 'DEVICE_UNAVAILABLE', 'INPUT_UNREADABLE', 'INPUT_COLUMN_MISSING'] as const) {
      expect(ERROR_CODES[c].retry, c).toBe('permanent');
    }
    for (const c of ['DOWNLOAD_TIMEOUT', 'DOWNLOAD_NETWORK', 'DOWNLOAD_HTTP_STATUS', 'DOWNLOAD_DNS_FAILED', 'DOWNLOAD_ABORTED', 'STAGE_FAILED', 'STAGING_UNAVAILABLE', 'OUTPUT_WRITE_FAILED', 'INTERNAL'] as const) {
      expect(ERROR_CODES[c].retry, c).toBe('transient');
    }
    expect(RETRYABLE_REASONS).toEqual(codesOfKind('transient'));
    expect(retryKindOf('NOT_A_CODE')).toBe('transient');
  });

  it('is documented in docs/errors.md exactly (npx tsx tools/errors-doc.ts rewrites it)', () => {
    const documented = documentedTables();
    expect(documented, 'docs/errors.md lacks the generated tables').not.toBeNull();
    expect(documented).toBe(errorTables());
    for (const code of Object.keys(ERROR_CODES)) expect(documented).toContain(`| \`${code}\` |`);
  });

  it('prefixes messages with the code and keeps details', () => {
    const e = new CapfiltError('WEIGHTS_TRUNCATED', 'model.safetensors: 10 bytes, header says 20', { file: 'x' });
    expect(e.message).toBe('WEIGHTS_TRUNCATED: model.safetensors: 10 bytes, header says 20');
    expect(e.text).toBe('model.safetensors: 10 bytes, header says 20');
    expect(isCapfiltError(e, 'WEIGHTS_TRUNCATED')).toBe(true);
    expect(isCapfiltError(e, 'CONFIG_INVALID')).toBe(false);
    expect(describeError(e).code).toBe('WEIGHTS_TRUNCATED');
    expect(describeError(new Error('boom')).code).toBe('INTERNAL');
  });

  it('finds the code of an error that wraps a CapfiltError as its cause, without reading messages', () => {
    const inner = new CapfiltError('STAGING_BLOB_MISSING', 'blob x is gone');
    const wrapped = new Error('do not retry', { cause: inner });
    expect(codeAndText(wrapped)).toEqual({ code: 'STAGING_BLOB_MISSING', text: 'blob x is gone' });
    expect(describeError(wrapped).code).toBe('STAGING_BLOB_MISSING');
    // A message that merely looks coded is not a code.
    expect(codeAndText(new Error('CONFIG_INVALID: spoofed'))).toEqual({ code: 'INTERNAL', text: 'CONFIG_INVALID: spoofed' });
  });

  it('maps Node and undici error codes in one table, through causes and AggregateErrors', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    expect(systemErrorOf(refused)).toMatchObject({ code: 'ECONNREFUSED', kind: 'connection' });
    expect(systemErrorOf(new Error('fetch failed', { cause: Object.assign(new Error('x'), { code: 'UND_ERR_HEADERS_TIMEOUT' }) }))).toMatchObject({ kind: 'timeout' });
    expect(systemErrorOf(new AggregateError([new Error('a'), Object.assign(new Error('b'), { code: 'ENETUNREACH' })]))).toMatchObject({ code: 'ENETUNREACH' });
    expect(systemErrorOf(new Error('ECONNREFUSED in the text only'))).toBeNull();
    for (const kind of Object.values(SYSTEM_ERROR_KINDS)) expect(['connection', 'timeout', 'dns', 'dns-temporary', 'too-large']).toContain(kind);
  });
});
