import { loadConfig, type LoadedConfig, type Override } from '../../src/config/load.ts';

/**
 * One way for every test to state its config: config paths → values, each an override marked
 * as coming from the test, so that an error names the option ("option shards.rows: … (from test)")
 * the way it would name a flag or an environment variable.
 */
export function testOverrides(values: Record<string, unknown>): Override[] {
  return Object.entries(values).map(([path, value]) => ({ path, value, source: 'test' }));
}

/** The config `values` give over the defaults; `env` is the environment it sees (REDIS_URL, …), none by default. */
export function testConfig(values: Record<string, unknown>, env: Record<string, string> = {}): LoadedConfig {
  return loadConfig({ env, overrides: testOverrides(values) });
}
