/**
 * Process overhead: what stageline adds to each request beyond starting the agent. The same test-double
 * agent (test/fixtures/fake-agent.mjs, a real child process) is run `n` times by a bare loop (spawn, read
 * its output, wait for it to exit) and through `n` requests at WORKER_COUNT 1; the difference per request
 * is the runner's cost: the claim, the workspace, the stages, the events, the result row.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { connect, createDatabase, dropDatabase } from "./support/databases.js"
import { load } from "./support/machine.js"
import { startStageline } from "./support/stageline.js"
import { median, now, round, until } from "./support/stats.js"
import { stagelineTables } from "./support/tables.js"

export const fakeAgent = path.join(import.meta.dirname, "..", "test", "fixtures", "fake-agent.mjs")

/** The flags execute-mclaude passes by default; the agent checks them. */
const agentArgs = ["--print", "--output-format", "stream-json", "--verbose", "--", "noop"]

const spawnOnce = (cwd: string) =>
  new Promise<void>((resolve, reject) => {
    const child = spawn(fakeAgent, agentArgs, { cwd, stdio: ["ignore", "pipe", "pipe"] })
    child.stdout.on("data", () => {})
    child.stderr.on("data", () => {})
    child.on("error", reject)
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`the agent exited ${code}`))))
  })

/** Pipelines that run the agent: the least it needs, and the default stages (no repository to clone). */
export const agentPipelines = (root: string) => {
  const write = (name: string, stages: string) => {
    const file = path.join(root, `${name}.yaml`)
    fs.writeFileSync(
      file,
      `name: ${name}\nagent:\n  command: ${fakeAgent}\n  config_dir: ./agent-config\nstages:\n${stages}`
    )
    return file
  }
  return {
    minimal: write("minimal", "  - claim\n  - prepare-workspace\n  - execute-mclaude\n  - record\n"),
    default: write(
      "default",
      "  - claim\n  - prepare-workspace\n  - use: customize-skill\n    with:\n      domains: [code-review]\n" +
        "  - execute-mclaude\n  - extract-git-artifacts\n  - record\n"
    )
  }
}

export const measureOverhead = async (options: { readonly n: number; readonly rounds: number }) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "stageline-bench-overhead-"))
  const pipelines = agentPipelines(root)
  const db = await createDatabase("overhead")
  const client = await connect(db.url)
  const tables = stagelineTables(client)
  const runs: Array<{ round: number; what: string; per_request_ms: number; load: number }> = []
  try {
    for (let r = 0; r < options.rounds; r++) {
      const cwd = fs.mkdtempSync(path.join(root, "bare-"))
      let started = now()
      for (let i = 0; i < options.n; i++) await spawnOnce(cwd)
      runs.push({ round: r + 1, what: "bare", per_request_ms: (now() - started) / options.n, load: load() })
      for (const [name, file] of Object.entries(pipelines)) {
        const worker = await startStageline({
          url: db.url,
          database: db.name,
          pipeline: file,
          workerCount: 1,
          observer: client,
          env: { WORKSPACE_BASE: path.join(root, "workspaces") }
        })
        try {
          await tables.empty()
          await tables.insertMany(options.n)
          started = now()
          await until("the agent requests to finish", async () => (await tables.completed()) >= options.n, 10)
          runs.push({ round: r + 1, what: name, per_request_ms: (now() - started) / options.n, load: load() })
          const failed = await client.query(`SELECT error FROM orchestration_results WHERE status <> 'success' LIMIT 1`)
          if (failed.rowCount) throw new Error(`an agent request failed: ${failed.rows[0].error}`)
        } finally {
          await worker.stop()
        }
      }
      console.log(
        `  overhead round ${r + 1}: ${runs
          .filter((x) => x.round === r + 1)
          .map((x) => `${x.what} ${round(x.per_request_ms, 1)} ms`)
          .join(", ")}`
      )
    }
  } finally {
    await client.end()
    await dropDatabase(db.name)
    fs.rmSync(root, { recursive: true, force: true })
  }
  const per = (what: string) => median(runs.filter((x) => x.what === what).map((x) => x.per_request_ms))
  // Per round, so both sides of a difference saw the same load.
  const overhead = (what: string) =>
    median(
      runs
        .filter((x) => x.what === what)
        .map((x) => x.per_request_ms - runs.find((b) => b.what === "bare" && b.round === x.round)!.per_request_ms)
    )
  return {
    requests: options.n,
    rounds: options.rounds,
    bare_spawn_ms: round(per("bare"), 1),
    minimal_pipeline_ms: round(per("minimal"), 1),
    default_pipeline_ms: round(per("default"), 1),
    overhead_minimal_ms: round(overhead("minimal"), 1),
    overhead_default_ms: round(overhead("default"), 1),
    runs: runs.map((x) => ({ ...x, per_request_ms: round(x.per_request_ms, 2) }))
  }
}
