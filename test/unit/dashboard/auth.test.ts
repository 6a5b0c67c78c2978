import { describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../../src/core/errors.ts';
import { checkBind, isLoopback } from '../../../src/dashboard/auth.ts';

describe('dashboard bind policy', () => {
  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.3.2.1', 'localhost', '::1', '[::1]']) expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.2', 'example.org', '128.0.0.1']) expect(isLoopback(h), h).toBe(false);
  });

  it('needs a token for any other address', () => {
    expect(() => checkBind('127.0.0.1', null)).not.toThrow();
    expect(() => checkBind('0.0.0.0', 'secret')).not.toThrow();
    try {
      checkBind('0.0.0.0', '');
      expect.unreachable();
    } catch (e) {
      expect(isCapfiltError(e, 'DASHBOARD_TOKEN_REQUIRED')).toBe(true);
    }
  });
});
