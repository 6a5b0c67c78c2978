import { describe, expect, it } from 'vitest';
import { CapfiltError, ERROR_CODES, describeError, isCapfiltError } from '../../../src/core/errors.ts';

describe('error catalogue', () => {
  it('has unique upper-snake codes with a description each', () => {
    for (const [code, text] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(/^[A-Z][A-Z0-9_]+$/);
      expect(text.length).toBeGreaterThan(5);
    }
  });

  it('prefixes messages with the code and keeps details', () => {
    const e = new CapfiltError('WEIGHTS_TRUNCATED', 'model.safetensors: 10 bytes, header says 20', { file: 'x' });
    expect(e.message).toBe('WEIGHTS_TRUNCATED: model.safetensors: 10 bytes, header says 20');
    expect(isCapfiltError(e, 'WEIGHTS_TRUNCATED')).toBe(true);
    expect(isCapfiltError(e, 'CONFIG_INVALID')).toBe(false);
    expect(describeError(e).code).toBe('WEIGHTS_TRUNCATED');
    expect(describeError(new Error('boom')).code).toBe('INTERNAL');
  });
});
