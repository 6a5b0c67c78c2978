import { defineConfig } from 'vitest/config';

// The long fault-injection runs (`npm run test:chaos`): one file at a time, since each scenario
// starts its own redis-server, image server and several capfilt processes on a 2-core machine.
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.chaos.ts'],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    maxWorkers: 1,
    pool: 'forks',
    globalSetup: ['test/helpers/chaos-summary.ts'],
  },
});
