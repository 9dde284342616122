import { defineConfig } from "vitest/config"

const reliabilityOthers = ["hostile-input", "secrets", "fuzz", "load"].map((f) => `test/reliability/${f}.test.ts`)

export default defineConfig({
  test: {
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Each file makes its own database, so files run in parallel; the machine has two cores.
    maxWorkers: 4,
    minWorkers: 1,
    projects: [
      {
        extends: true,
        test: {
          name: "main",
          include: ["test/**/*.test.ts", "examples/**/*.test.ts"],
          exclude: ["test/reliability/**", "**/node_modules/**"],
          sequence: { groupOrder: 0 }
        }
      },
      // The reliability suite runs fleets of worker processes and a server it restarts: after the rest, so
      // that the rest's process tests are not starved of the machine's two cores, and two files at a time
      // (one of each project below, each running its files one by one).
      {
        extends: true,
        test: {
          name: "reliability-faults",
          include: ["test/reliability/**/*.test.ts"],
          exclude: reliabilityOthers,
          sequence: { groupOrder: 1 },
          poolOptions: { forks: { singleFork: true } }
        }
      },
      {
        extends: true,
        test: {
          name: "reliability-input-and-load",
          include: reliabilityOthers,
          sequence: { groupOrder: 1 },
          poolOptions: { forks: { singleFork: true } }
        }
      }
    ]
  }
})
