import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start real servers and databases; two cores: keep parallelism modest.
    maxWorkers: 2,
    // Bounds for a hung test, not budgets: CI may run on a busy 2-core machine (see
    // test/helpers/latch.ts, whose deadlines are stretched the same way).
    testTimeout: 240_000,
    hookTimeout: 240_000,
    reporters: ['default'],
  },
});
