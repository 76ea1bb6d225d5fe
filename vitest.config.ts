import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    // The machines have 2 cores; more workers only add contention.
    maxWorkers: 2,
    reporters: ["default", "./test/count-reporter.ts"],
  },
});
