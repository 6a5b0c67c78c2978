import { describe, expect, it } from 'vitest';
import { logFormat } from '../../../src/core/logger.ts';

describe('log format', () => {
  it('is JSON unless pretty is asked for; CAPFILT_LOG_FORMAT wins over the old CAPFILT_LOG_PRETTY', () => {
    expect(logFormat({})).toBe('json');
    expect(logFormat({ CAPFILT_LOG_PRETTY: '1' })).toBe('pretty');
    expect(logFormat({ CAPFILT_LOG_FORMAT: 'pretty' })).toBe('pretty');
    expect(logFormat({ CAPFILT_LOG_FORMAT: 'json', CAPFILT_LOG_PRETTY: '1' })).toBe('json');
    expect(logFormat({ CAPFILT_LOG_FORMAT: 'yaml' })).toBe('json');
  });
});
