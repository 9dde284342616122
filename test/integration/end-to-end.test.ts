import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { makeBareRepo, runOnce, tempDir, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"

interface ResultRow {
  readonly status: string
  readonly commit_sha: string | null
  readonly duration_ms: number
  readonly error: string | null
  readonly output: {
    stdout: string
    result: { result: string } | null
    git: {
      commits: Array<{ sha: string; subject: string }>
      diffStat: { filesChanged: number; insertions: number; deletions: number } | null
      pushed: boolean
    }
  }
  readonly attempt: number
  readonly branch_name: string | null
  readonly session_id: string | null
  readonly model: string | null
}

const resultsFor = (id: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<ResultRow>`SELECT * FROM orchestration_results WHERE request_id = ${id}`
  )

const requestStatus = (id: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ status: string }>`SELECT status FROM orchestration_requests WHERE id = ${id}`.pipe(
      Effect.map((rows) => rows[0]?.status)
    )
  )

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })(
  "a request inserted with the seed's plain SQL",
  (it) => {
    it.effect("runs through every stage and records the commit the agent made", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const repo = makeBareRepo()
        const pipeline = writePipeline()
        const prompt = "Review and fix.\n@write notes/review.md looks good\n@commit add review notes\n@pwd"
        const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (repo_url, prompt)
          VALUES (${repo.url}, ${prompt}) RETURNING id`
        const id = row!.id

        const summary = yield* runOnce(pipeline.file)
        expect(summary.processed).toBe(1)

        const results = yield* resultsFor(id)
        expect(results).toHaveLength(1)
        const result = results[0]!
        expect(result.error).toBeNull()
        expect(result.status).toBe("success")
        expect(yield* requestStatus(id)).toBe("completed")
        expect(result.duration_ms).toBeGreaterThan(0)

        // The commit the agent reported making is the one recorded, and it is new.
        const made = /committed ([0-9a-f]{40})/.exec(result.output.result!.result)?.[1]
        expect(made).toBeDefined()
        expect(result.commit_sha).toBe(made)
        expect(result.commit_sha).not.toBe(repo.baseSha)
        expect(result.output.git.commits).toEqual([{ sha: made, subject: "add review notes" }])
        expect(result.output.git.diffStat).toEqual({ filesChanged: 1, insertions: 1, deletions: 0 })
        expect(result.output.git.pushed).toBe(false)
        expect(result.branch_name).toBe("main")
        expect(result.attempt).toBe(1)
        expect(result.session_id).toBe("00000000-0000-4000-8000-000000000001")
        expect(result.model).toBe("claude-sonnet-4-5")
        // The seed's `output->>'stdout'` holds the agent's raw output.
        const [stdout] = yield* sql<{
          stdout: string
        }>`SELECT output->>'stdout' AS stdout FROM orchestration_results WHERE request_id = ${id}`
        // stream-json: the agent's progress line by line, its result last.
        const lines = stdout!.stdout
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as { type: string })
        expect(lines[0]!.type).toBe("system")
        expect(lines[lines.length - 1]!.type).toBe("result")

        // The agent ran in a clone of the repository, since removed (CLEANUP_AFTER_COMPLETE).
        const pwd = /pwd=(.*)/.exec(result.output.result!.result)?.[1]
        expect(pwd).toMatch(new RegExp(`${id}-a1$`))
        expect(fs.existsSync(pwd!)).toBe(false)

        // customize-skill installed the bundled skill and the named domain into the agent's config dir.
        const skillDir = path.join(pipeline.configDir, "skills", "orchestration")
        expect(fs.existsSync(path.join(skillDir, "SKILL.md"))).toBe(true)
        expect(fs.existsSync(path.join(skillDir, "references", "domains", "code-review.md"))).toBe(true)
      })
    )

    it.effect("reports a branch the agent pushed", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const repo = makeBareRepo()
        const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (repo_url, prompt)
        VALUES (${repo.url}, ${"@write a.txt one\n@write b.txt two\n@commit two files\n@push"}) RETURNING id`
        yield* runOnce(writePipeline().file)
        const [result] = yield* resultsFor(row!.id)
        expect(result!.output.git.pushed).toBe(true)
        expect(result!.output.git.diffStat).toEqual({ filesChanged: 2, insertions: 2, deletions: 0 })
        const remoteHead = execFileSync("git", ["rev-parse", "main"], { cwd: repo.path }).toString().trim()
        expect(remoteHead).toBe(result!.commit_sha)
      })
    )

    it.effect("runs a request without repo_url in an empty workspace", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const pipeline = writePipeline()
        const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt)
          VALUES (${"Say hello.\n@ls\n@pwd"}) RETURNING id`
        yield* runOnce(pipeline.file)
        const [result] = yield* resultsFor(row!.id)
        expect(result!.status).toBe("success")
        expect(result!.output.result!.result).toContain("ls=[]")
        expect(result!.commit_sha).toBeNull()
        expect(yield* requestStatus(row!.id)).toBe("completed")
      })
    )

    it.effect("empties a workspace of the same name that an earlier run of the attempt left", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const pipeline = writePipeline()
        const base = tempDir("stale")
        const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt)
          VALUES (${"@ls"}) RETURNING id`
        fs.mkdirSync(path.join(base, `${row!.id}-a1`, "sub"), { recursive: true })
        fs.writeFileSync(path.join(base, `${row!.id}-a1`, "sub", "stale.txt"), "from the crashed run\n")
        // Workspaces kept, so the worker's start does not reclaim it first: as after a request put back
        // by a shutdown, whose next claim has the same attempt number.
        yield* runOnce(pipeline.file, { workspaceBase: base, cleanupAfterComplete: false })
        const [result] = yield* resultsFor(row!.id)
        expect(result!.status).toBe("success")
        expect(result!.output.result!.result).toContain("ls=[]")
      })
    )

    it.effect("keeps the workspace when CLEANUP_AFTER_COMPLETE is false", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const pipeline = writePipeline()
        const base = tempDir("keep")
        const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt)
          VALUES (${"@write kept.txt yes"}) RETURNING id`
        yield* runOnce(pipeline.file, { workspaceBase: base, cleanupAfterComplete: false })
        expect(fs.readFileSync(path.join(base, `${row!.id}-a1`, "kept.txt"), "utf8")).toBe("yes\n")
      })
    )
  }
)

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("workspaces a killed worker left", (it) => {
  it.effect("are removed when a worker starts, unless their attempt is still running", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const base = tempDir("ws")
      const [done] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, status, attempts)
        VALUES ('old', 'failed', 1) RETURNING id`
      const [running] = yield* sql<{
        id: string
      }>`INSERT INTO orchestration_requests (prompt, status, attempts, claimed_by, lease_expires_at)
        VALUES ('busy', 'processing', 2, 'elsewhere/1', now() + interval '1 hour') RETURNING id`
      const make = (name: string) => fs.mkdirSync(path.join(base, name), { recursive: true })
      make(`${done!.id}-a1`)
      make(`.tmp/${done!.id}-a1`)
      make(`${running!.id}-a1`)
      make(`${running!.id}-a2`)
      make("not-a-workspace")
      yield* runOnce(writePipeline().file, { workspaceBase: base })
      expect(fs.readdirSync(base).sort()).toEqual([".tmp", `${running!.id}-a2`, "not-a-workspace"].sort())
      expect(fs.readdirSync(path.join(base, ".tmp"))).toEqual([])
    })
  )
})
