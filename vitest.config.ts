import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "examples/**/*.test.ts"],
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Each file makes its own database, so files run in parallel; the machine has two cores.
    maxWorkers: 4,
    minWorkers: 1
  }
})
