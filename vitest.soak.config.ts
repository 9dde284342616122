import { defineConfig } from "vitest/config"

// The long scenarios (`npm run soak`): the 10,000-request load, the long fuzz, and the worker killed after
// every stage (KILL_EVERY_STAGE=1). Their small versions run in `npm test`.
export default defineConfig({
  test: {
    include: ["test/reliability/**/*.soak.ts", "test/reliability/kill-after-each-stage.test.ts"],
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 3_600_000,
    hookTimeout: 120_000,
    // One scenario at a time: each loads the whole machine.
    fileParallelism: false
  }
})
