/**
 * Worker processes (the real `stageline run`) against a database, the rows they leave, and the audit that
 * every reliability test ends with: each request final, one result per attempt, nothing run twice, nothing
 * left behind.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import pg from "pg"
import { afterAll, beforeAll, inject } from "vitest"
import { type Running, startCli, waitFor } from "../../support/cli.js"
import { tempDir } from "../../support/harness.js"
import { isRunning } from "../../support/processes.js"

export interface WorkerProcess extends Running {
  readonly name: string
  readonly pid: number
  /** Resident memory now, in KiB (from /proc), or null once it exited. */
  readonly rssKiB: () => number | null
  /** SIGTERM, then wait for the exit. */
  readonly stop: () => Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

export const startWorker = (
  pipelineFile: string,
  name: string,
  env: Record<string, string | undefined>,
  args: ReadonlyArray<string> = []
): WorkerProcess => {
  const running = startCli(["run", "--pipeline", pipelineFile, ...args], { STAGELINE_WORKER_ID: name, ...env })
  const pid = running.child.pid!
  return {
    ...running,
    name,
    pid,
    rssKiB: () => {
      try {
        const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
        return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN)
      } catch {
        return null
      }
    },
    stop: async () => {
      if (running.child.exitCode === null && running.child.signalCode === null) {
        // Until the runtime is up, SIGTERM finds no handler and ends the process by the signal: wait for it.
        await waitFor(
          "the worker to be running before it is stopped",
          async () => running.output().includes("running pipeline") || running.child.exitCode !== null,
          60_000
        ).catch(() => undefined)
        running.child.kill("SIGTERM")
      }
      return running.exited
    }
  }
}

/** Inserts rows as anyone with SQL would; returns their ids in order. */
export const insertRequests = async (
  db: pg.Pool,
  rows: ReadonlyArray<{
    readonly prompt: string
    readonly repo_url?: string | null
    readonly branch?: string | null
    readonly config?: unknown
    readonly metadata?: unknown
    readonly max_attempts?: number | null
    readonly priority?: number
  }>
): Promise<Array<string>> => {
  const ids: Array<string> = []
  for (const r of rows) {
    const { rows: inserted } = await db.query<{ id: string }>(
      `INSERT INTO orchestration_requests (prompt, repo_url, branch, config, metadata, max_attempts, priority)
       VALUES ($1, $2, coalesce($3, 'main'), $4::jsonb, $5::jsonb, $6, coalesce($7, 0)) RETURNING id`,
      [
        r.prompt,
        r.repo_url ?? null,
        r.branch ?? null,
        r.config === undefined ? null : JSON.stringify(r.config),
        r.metadata === undefined ? null : JSON.stringify(r.metadata),
        r.max_attempts ?? null,
        r.priority ?? 0
      ]
    )
    ids.push(inserted[0]!.id)
  }
  return ids
}

/** Waits until no request is pending or processing (or the deadline passes: then it says which are not). */
export const waitUntilSettled = async (db: pg.Pool, ms: number) => {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    const { rows } = await db
      .query<{ open: number }>(
        `SELECT count(*)::int AS open FROM orchestration_requests WHERE status IN ('pending', 'processing')`
      )
      .catch(() => ({ rows: [{ open: -1 }] }))
    if (rows[0]!.open === 0) return
    await new Promise((r) => setTimeout(r, 100))
  }
  const { rows } = await db.query(
    `SELECT id, status, attempts, claimed_by, current_stage, lease_expires_at FROM orchestration_requests
      WHERE status IN ('pending', 'processing') LIMIT 10`
  )
  throw new Error(`requests still open after ${ms} ms: ${JSON.stringify(rows)}`)
}

export interface Audit {
  readonly requests: number
  /** Requests not in a final state, or claimed with an attempt that has no result row. */
  readonly lost: number
  /** Requests with more results than attempts, or more than one successful result, or run to the end twice. */
  readonly duplicated: number
  /** Processes left by the workers, and workspaces or credential folders left on disk. */
  readonly orphans: number
  readonly byStatus: Record<string, number>
  /** Failed attempts that ended with a result row saying why. */
  readonly failedAttempts: number
  readonly problems: ReadonlyArray<string>
}

/**
 * The invariant: every request is final; every claimed one has exactly one result per attempt (attempts
 * 1..n) and at most one successful one; when `runsFile` is given (agents that `@append FILE <id>` at their
 * end), no request's agent ran to its end more than once after success; no process carrying one of the
 * workers' marks lives on; no workspace is left in `workspaceBase`.
 */
export const audit = async (
  db: pg.Pool,
  options: {
    readonly workers?: ReadonlyArray<WorkerProcess>
    readonly workspaceBase?: string
    readonly runsFile?: string
    /** How long processes and workspaces may take to go after the last request is final. */
    readonly graceMs?: number
  } = {}
): Promise<Audit> => {
  const { rows } = await db.query<{
    id: string
    status: string
    attempts: number
    results: number
    distinct_attempts: number
    max_attempt: number | null
    successes: number
  }>(
    `SELECT q.id, q.status, q.attempts,
            count(r.id)::int AS results,
            count(DISTINCT r.attempt)::int AS distinct_attempts,
            max(r.attempt) AS max_attempt,
            (count(*) FILTER (WHERE r.status IN ('success', 'partial')))::int AS successes
       FROM orchestration_requests q LEFT JOIN orchestration_results r ON r.request_id = q.id
      GROUP BY q.id`
  )
  const problems: Array<string> = []
  let lost = 0
  let duplicated = 0
  const runs = new Map<string, number>()
  if (options.runsFile && fs.existsSync(options.runsFile)) {
    for (const line of fs.readFileSync(options.runsFile, "utf8").split("\n").filter(Boolean)) {
      runs.set(line.trim(), (runs.get(line.trim()) ?? 0) + 1)
    }
  }
  const byStatus: Record<string, number> = {}
  for (const r of rows) {
    byStatus[r.status] = (byStatus[r.status] ?? 0) + 1
    if (!["completed", "failed", "cancelled"].includes(r.status)) {
      lost++
      problems.push(`request ${r.id} is ${r.status}`)
    } else if (r.results < r.attempts || (r.attempts > 0 && r.max_attempt !== r.attempts)) {
      lost++
      problems.push(`request ${r.id}: ${r.attempts} attempt(s) but results for ${r.distinct_attempts}`)
    }
    if (r.results > r.attempts || r.successes > 1 || r.distinct_attempts !== r.results) {
      duplicated++
      problems.push(`request ${r.id}: ${r.results} result(s) for ${r.attempts} attempt(s), ${r.successes} successful`)
    }
    if (r.status === "completed" && r.successes !== 1) {
      problems.push(`request ${r.id} is completed with ${r.successes} successful results`)
      lost++
    }
    if ((runs.get(r.id) ?? 0) > 1 && r.status === "completed") {
      duplicated++
      problems.push(`request ${r.id}: its agent ran to the end ${runs.get(r.id)} times`)
    }
  }
  // A request is final when record commits; its workspace goes a moment later, when its run's scope
  // closes: what is left is left only if it is still there after a grace period.
  const leftBehind = () => ({
    orphanPids: orphanProcesses(options.workers ?? []),
    leftovers: options.workspaceBase ? leftoverWorkspaces(options.workspaceBase) : []
  })
  let { orphanPids, leftovers } = leftBehind()
  for (
    let waited = 0;
    waited < (options.graceMs ?? 10_000) && orphanPids.length + leftovers.length > 0;
    waited += 200
  ) {
    await new Promise((r) => setTimeout(r, 200))
    ;({ orphanPids, leftovers } = leftBehind())
  }
  for (const pid of orphanPids) problems.push(`process ${pid} of a worker outlived it`)
  for (const dir of leftovers) problems.push(`workspace ${dir} was left behind`)
  const [failed] = (
    await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM orchestration_results WHERE status <> 'success'`)
  ).rows
  return {
    requests: rows.length,
    lost,
    duplicated,
    orphans: orphanPids.length + leftovers.length,
    byStatus,
    failedAttempts: failed!.n,
    problems
  }
}

/** Live processes whose environment names one of these workers as their owner (see ProcessTree). */
export const orphanProcesses = (workers: ReadonlyArray<{ readonly pid: number }>): Array<number> => {
  const marks = workers.map((w) => Buffer.from(`STAGELINE_WORKER=${w.pid}:`))
  if (marks.length === 0) return []
  const found: Array<number> = []
  for (const entry of fs.readdirSync("/proc")) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || pid === process.pid) continue
    try {
      const environ = fs.readFileSync(`/proc/${pid}/environ`)
      if (marks.some((m) => environ.includes(m)) && isRunning(pid)) found.push(pid)
    } catch {
      // gone, or not readable
    }
  }
  return found
}

const workspaceName = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-a\d+$/

/** Request workspaces, private temp dirs and credential folders still on disk. */
export const leftoverWorkspaces = (base: string): Array<string> =>
  [base, path.join(base, ".tmp"), path.join(base, ".secrets")].flatMap((dir) =>
    (fs.existsSync(dir) ? fs.readdirSync(dir) : []).filter((e) => workspaceName.test(e)).map((e) => path.join(dir, e))
  )

/** The environment of a worker process on `databaseUrl`, with a fresh workspace base (info logs: stop() reads them). */
export const workerEnv = (databaseUrl: string, extra: Record<string, string> = {}) => ({
  DATABASE_URL: databaseUrl,
  WORKSPACE_BASE: tempDir("ws"),
  LOG_LEVEL: "info",
  POLL_INTERVAL_MS: "500",
  ...extra
})

export const connect = (url: string) => {
  const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 5_000 })
  pool.on("error", () => {})
  return pool
}

/** Prints the figures a test measured, in one greppable line. */
export const report = (scenario: string, figures: Record<string, unknown>) =>
  console.log(`reliability figures ${scenario}: ${JSON.stringify(figures)}`)

/** A fresh, empty database on the test run's server (migrated by the first worker), and its removal. */
export const ownDatabase = async (adminUrl: string) => {
  const name = `stageline_rel_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: adminUrl })
    await client.connect()
    try {
      await client.query(statement)
    } finally {
      await client.end()
    }
  }
  await admin(`CREATE DATABASE ${name}`)
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) }
}

/** The same URL through another host and port (a proxy in front of the server). */
export const viaPort = (databaseUrl: string, port: number) => {
  const url = new URL(databaseUrl)
  url.hostname = "127.0.0.1"
  url.port = String(port)
  return url.toString()
}

/** A database of the describe block's own on the run's server: made before its tests, dropped after. */
export const useOwnDatabase = () => {
  let database: { url: string; drop: () => Promise<void> } | undefined
  beforeAll(async () => {
    database = await ownDatabase(inject("adminDatabaseUrl"))
  })
  afterAll(async () => {
    await database?.drop()
  })
  return {
    get url() {
      if (!database) throw new Error("the database is made in beforeAll")
      return database.url
    }
  }
}
