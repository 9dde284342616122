/**
 * Details of the built-in stages that matter in production: the PR from the forge, output caps, and a
 * record that can be retried.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { Queue } from "../../src/queue/Queue.js"
import { withEnv } from "../support/env.js"
import { makeBareRepo, runOnce, tempDir, writePipeline } from "../support/harness.js"
import { isRunning } from "../support/processes.js"
import { successOf } from "../support/resultRows.js"
import { TestDatabase } from "../support/TestDatabase.js"

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("the stages in detail", (it) => {
  it.effect("asks gh for the pushed branch's pull request, when gh and a token are there", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const bin = tempDir("gh-bin")
      const calls = path.join(bin, "calls.jsonl")
      fs.writeFileSync(
        path.join(bin, "gh"),
        `#!/usr/bin/env node
require("node:fs").appendFileSync(${JSON.stringify(calls)}, JSON.stringify({ args: process.argv.slice(2), token: process.env.GH_TOKEN }) + "\\n")
process.stdout.write("https://github.com/acme/widgets/pull/77\\n")
`
      )
      fs.chmodSync(path.join(bin, "gh"), 0o755)
      const repo = makeBareRepo()
      const [pushed] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (repo_url, prompt)
        VALUES (${repo.url}, ${"@write x.md x\n@commit x\n@push"}) RETURNING id`
      const [local] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (repo_url, prompt)
        VALUES (${repo.url}, ${"@write y.md y\n@commit y\n@say see https://github.com/acme/widgets/pull/5"}) RETURNING id`
      yield* withEnv(
        { PATH: `${bin}:${process.env.PATH}`, GH_TOKEN: "ghp_gh_cli_token" },
        runOnce(writePipeline().file)
      )
      const prOf = (id: string) =>
        sql<{ pr_url: string | null }>`SELECT pr_url FROM orchestration_results WHERE request_id = ${id}`.pipe(
          Effect.map((r) => r[0]!.pr_url)
        )
      expect(yield* prOf(pushed!.id)).toBe("https://github.com/acme/widgets/pull/77")
      // Not pushed: gh is not asked, and the URL the agent printed is kept.
      expect(yield* prOf(local!.id)).toBe("https://github.com/acme/widgets/pull/5")
      const made = fs
        .readFileSync(calls, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l))
      expect(made).toEqual([
        { args: ["pr", "view", "main", "--json", "url", "--jq", ".url"], token: "ghp_gh_cli_token" }
      ])
    })
  )

  it.effect("caps what it keeps of a runaway agent's output, and says so", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt)
        VALUES (${"@flood 200000"}) RETURNING id`
      const pipeline = writePipeline({
        stages:
          "\n  - claim\n  - prepare-workspace\n  - use: execute-mclaude\n    with: { output_limit_bytes: 4096 }\n  - record\n"
      })
      yield* runOnce(pipeline.file)
      const [r] = yield* sql<{ length: number; truncated: boolean; status: string }>`SELECT
          length(output->>'stdout') AS length, (output->>'stdout_truncated')::boolean AS truncated, status
        FROM orchestration_results WHERE request_id = ${row!.id}`
      expect(r!.length).toBeLessThanOrEqual(4096)
      expect(r!.truncated).toBe(true)
      // The result line, printed last, was past the cap and is read all the same.
      expect(r!.status).toBe("success")
    })
  )

  it.effect("finishes when the agent exits, even if a child it left holds its output open", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const pidFile = path.join(tempDir("pids"), "pids.json")
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, metadata)
        VALUES (${"@leave-child\n@say done"}, ${JSON.stringify({ pidFile })}::jsonb) RETURNING id`
      yield* runOnce(
        writePipeline({ stages: "\n  - claim\n  - prepare-workspace\n  - execute-mclaude\n  - record\n" }).file
      )
      const [r] = yield* sql<{ status: string; error: string | null }>`SELECT status, error FROM orchestration_results
        WHERE request_id = ${row!.id}`
      expect(r).toEqual({ status: "success", error: null })
      const [child] = JSON.parse(fs.readFileSync(pidFile, "utf8")) as Array<number>
      expect(isRunning(child!)).toBe(false)
    })
  )

  it.effect("records an attempt once, however often record is retried", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const queue = yield* Queue
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, status, attempts, claimed_by)
        VALUES ('p', 'processing', 1, 'w/1') RETURNING id`
      const result = successOf(row!.id)
      const retry = { retryable: false, maxAttempts: 1, backoffMs: 0 }
      expect(yield* queue.record(result, retry)).toBe("recorded")
      // As if the commit's reply was lost and record ran again.
      expect(yield* queue.record(result, retry)).toBe("already-recorded")
      const [count] = yield* sql<{
        n: number
      }>`SELECT count(*)::int AS n FROM orchestration_results WHERE request_id = ${row!.id}`
      expect(count!.n).toBe(1)
      // Another worker cannot record it.
      expect(yield* queue.record({ ...result, workerId: "other/1" }, retry)).toBe("not-owner")
    }).pipe(Effect.provide(Queue.layer))
  )

  it.effect("writes no result for a worker that lost its claim", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const queue = yield* Queue
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, status, attempts, claimed_by)
        VALUES ('p', 'processing', 1, 'w/1') RETURNING id`
      // An operator put it back; the old owner still finishes its run and records.
      expect(yield* queue.release(row!.id, "w/1")).toBe("pending")
      const outcome = yield* queue.record(successOf(row!.id), { retryable: false, maxAttempts: 1, backoffMs: 0 })
      expect(outcome).toBe("not-owner")
      const [left] = yield* sql<{ status: string; results: number }>`SELECT status,
          (SELECT count(*)::int FROM orchestration_results WHERE request_id = ${row!.id}) AS results
        FROM orchestration_requests WHERE id = ${row!.id}`
      expect(left).toEqual({ status: "pending", results: 0 })
    }).pipe(Effect.provide(Queue.layer))
  )
})
