/**
 * Random request rows, valid and invalid, from a seeded PRNG, through worker processes; some cancelled
 * while they wait or run, and (in the soak) workers SIGKILLed and replaced as it goes. The invariant: every
 * claimed request ends with exactly one result per attempt and a final status, nothing is left behind, and
 * the workers that were not killed are alive. A failure names its seed: FUZZ_SEED=<seed> replays it.
 */
import * as path from "node:path"
import { expect } from "vitest"
import { runCli } from "../../support/cli.js"
import { makeBareRepo, tempDir, writePipeline } from "../../support/harness.js"
import {
  audit,
  connect,
  insertRequests,
  report,
  startWorker,
  type WorkerProcess,
  waitUntilSettled,
  workerEnv
} from "./Fleet.js"
import { prng } from "./Prng.js"

type Row = Parameters<typeof insertRequests>[1][number]

const rowsFor = (seed: number, count: number, repoUrl: string, scratch: string): Array<Row> => {
  const r = prng(seed)
  const directive = (i: number) =>
    r.pick([
      `@say row ${i}`,
      `@sleep ${r.int(0, 400)}\n@say slept`,
      `@sleep ${r.int(500, 2_000)}\n@say slept long`,
      "@crash",
      `@exit ${r.int(1, 255)}`,
      "@malformed",
      "@error API Error: 500",
      "@max-turns",
      "@deny Bash",
      "@kill-self",
      "@signal SIGSEGV",
      "@raw-bytes",
      "@result-then-hang",
      `@fail-once ${path.join(scratch, `fail-once-${i}`)}`,
      "@write notes.md fuzz\n@commit fuzz",
      "@flood 200000"
    ])
  const prompt = (i: number) =>
    r.pick([
      () => directive(i),
      () => `${directive(i)}\n${directive(i)}`,
      () => "",
      () => "   \n  ",
      () => "no directive at all",
      () => String.fromCharCode(...Array.from({ length: r.int(1, 200) }, () => r.int(1, 0xd7ff))),
      () => `@say ${"big ".repeat(r.int(30_000, 40_000))}`
    ])()
  const config = () =>
    r.pick<unknown>([
      undefined,
      undefined,
      undefined,
      {},
      { model: r.pick(["haiku", "sonnet", "opus", "claude-sonnet-4-5"]) },
      { timeout_minutes: r.pick([0.005, 0.01, 1]) },
      { max_turns: r.int(1, 5), max_budget_usd: 0.5 },
      { skill_overrides: { files: { "fuzz.md": "# fuzz\n" } } },
      { skill_overrides: { domains: ["code-review"] } },
      { timeout_minutes: -1 },
      { model: r.int(0, 9) },
      { unknown_key: true },
      [1, 2, 3],
      "a string",
      { skill_overrides: { files: { "../x.md": "x" } } },
      { model: "--help" }
    ])
  const metadata = () =>
    r.pick<unknown>([
      undefined,
      undefined,
      undefined,
      undefined,
      { prNumber: r.int(1, 999) },
      { supabaseUrl: "https://db.example.invalid", flag: true },
      { PATH: "/tmp" },
      { nodeOptions: "--require x" },
      { nested: { a: 1 } },
      { list: [1] },
      "not an object",
      { "": "empty key" },
      { big: "m".repeat(r.pick([10, 70_000])) }
    ])
  return Array.from({ length: count }, (_, i) => {
    const withRepo = r.chance(0.25)
    return {
      prompt: prompt(i),
      repo_url: withRepo
        ? r.pick([repoUrl, repoUrl, "--upload-pack=x", "ext::sh -c x", "file:///nonexistent", "https://u:p@h/x"])
        : null,
      branch: withRepo ? r.pick(["main", "main", "main", "no-such-branch", "--orphan", "../x"]) : null,
      config: config(),
      metadata: metadata(),
      max_attempts: r.pick([null, null, 1, 2, 3]),
      priority: r.int(-2, 2)
    }
  })
}

export const runFuzz = async (options: {
  readonly databaseUrl: string
  readonly seed: number
  readonly rows: number
  readonly processes: number
  readonly fibers: number
  /** SIGKILL a random worker (and start a new one) this often; never when null. */
  readonly killEveryMs: number | null
  readonly settleMs: number
}) => {
  const { seed } = options
  const r = prng(seed ^ 0x5eed)
  const env = workerEnv(options.databaseUrl, {
    WORKER_COUNT: String(options.fibers),
    LOG_LEVEL: "info",
    STAGELINE_LEASE_MS: "3000",
    STAGELINE_MAX_ATTEMPTS: "2",
    STAGELINE_RETRY_BACKOFF_MS: "0",
    STAGELINE_RETRY_ON: "timeout,crash,error",
    POLL_INTERVAL_MS: "200"
  })
  expect((await runCli(["migrate"], env)).code, `seed ${seed}`).toBe(0)
  const db = connect(options.databaseUrl)
  const repo = makeBareRepo()
  const rows = rowsFor(seed, options.rows, repo.url, tempDir("fuzz-scratch"))
  const pipeline = writePipeline({
    stages: `
  - claim
  - prepare-workspace
  - use: customize-skill
    with:
      domains: [code-review]
  - use: execute-mclaude
    with:
      result_grace_ms: 200
      kill_grace_ms: 500
  - extract-git-artifacts
  - record
`
  })
  let spawned = 0
  const spawn = () => startWorker(pipeline.file, `fuzz-${++spawned}`, env)
  const live: Array<WorkerProcess> = Array.from({ length: options.processes }, spawn)
  const killed: Array<WorkerProcess> = []
  const ids = await insertRequests(db, rows)

  let cancels = 0
  let cancelsInFlight = 0
  const stop = { now: false }
  const chaos = (async () => {
    let sinceKill = 0
    while (!stop.now) {
      await new Promise((res) => setTimeout(res, 250))
      sinceKill += 250
      if (r.chance(0.3)) {
        // Half the time one that is running now, so cancels reach agents in flight, not only the queue.
        const running = r.chance(0.5)
          ? (
              await db
                .query<{ id: string }>(
                  "SELECT id FROM orchestration_requests WHERE status = 'processing' ORDER BY id LIMIT 1"
                )
                .catch(() => ({ rows: [] as Array<{ id: string }> }))
            ).rows[0]?.id
          : undefined
        const id = running ?? r.pick(ids)
        const { rowCount } = await db
          .query(
            "UPDATE orchestration_requests SET status = 'cancelled' WHERE id = $1 AND status IN ('pending', 'processing')",
            [id]
          )
          .catch(() => ({ rowCount: 0 }))
        cancels += rowCount ?? 0
        if (running !== undefined) cancelsInFlight += rowCount ?? 0
      }
      if (options.killEveryMs !== null && sinceKill >= options.killEveryMs) {
        sinceKill = 0
        const victim = live.splice(r.int(0, live.length - 1), 1)[0]!
        victim.child.kill("SIGKILL")
        await victim.exited
        killed.push(victim)
        live.push(spawn())
      }
    }
  })()
  try {
    await waitUntilSettled(db, options.settleMs)
  } finally {
    stop.now = true
    await chaos
  }
  const alive = live.map((w) => w.child.exitCode === null && w.child.signalCode === null)
  // What killed workers left is removed by the live ones' rescue loops.
  const result = await audit(db, { workers: [...live, ...killed], workspaceBase: env.WORKSPACE_BASE, graceMs: 20_000 })
  const exits = await Promise.all(live.map((w) => w.stop()))
  await db.end()
  report(`fuzz-${options.rows}`, {
    seed,
    requests: result.requests,
    faults: killed.length + cancels,
    workersKilled: killed.length,
    cancels,
    cancelsInFlight,
    lost: result.lost,
    duplicated: result.duplicated,
    orphans: result.orphans,
    byStatus: result.byStatus,
    failedAttempts: result.failedAttempts
  })
  expect(result.problems, `seed ${seed} (FUZZ_SEED=${seed} replays it)`).toEqual([])
  expect(alive, `seed ${seed}: every worker not killed on purpose is alive`).toEqual(live.map(() => true))
  expect(
    exits.map((e) => e.code),
    `seed ${seed}`
  ).toEqual(live.map(() => 0))
}
