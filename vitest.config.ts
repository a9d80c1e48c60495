import { defineConfig } from 'vitest/config';

// Native tests share one libtorch per process; run files in forked workers one at a time so
// thread counts and timings are not distorted by neighbouring test files on a 2-core machine.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
