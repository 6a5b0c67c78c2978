import { defineConfig } from 'vitest/config';

// Tests share one real Redis and two CPU cores: keep file-level parallelism low so that
// timing-sensitive integration tests are not starved.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
    pool: 'forks',
  },
});
