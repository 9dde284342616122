import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { vi } from "vitest"
import { DatabaseUrl } from "../../src/db/Database.js"
import * as EventLog from "../../src/queue/EventLog.js"
import { runCli, startCli, startup, waitFor } from "../support/cli.js"
import { runOnce, tempDir, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"

// The CLI tests start worker and follower processes; on a busy machine that alone takes many seconds.
vi.setConfig({ testTimeout: 180_000 })

/** The environment of a `stageline` process on this file's database. */
const cliEnv = Effect.map(DatabaseUrl, (url) => ({
  DATABASE_URL: Redacted.value(url),
  WORKSPACE_BASE: tempDir("ws"),
  LOG_LEVEL: "error"
}))

layer(TestDatabase, { excludeTestServices: true, timeout: "90 seconds" })("progress events", (it) => {
  it.effect("record the claim, every stage, and the agent's own steps as they happen", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt)
        VALUES (${"@say looking around\n@say all good"}) RETURNING id`
      yield* runOnce(writePipeline().file)
      const events = yield* sql<{
        kind: string
        stage: string
        message: string | null
        at: Date
      }>`SELECT kind, stage, message, at
        FROM orchestration_events WHERE request_id = ${row!.id} ORDER BY id`
      expect(events.map((e) => `${e.kind} ${e.stage}`)).toEqual([
        "claimed claim",
        "stage-started prepare-workspace",
        "stage-finished prepare-workspace",
        "stage-started customize-skill",
        "stage-finished customize-skill",
        "stage-started execute-mclaude",
        "agent execute-mclaude",
        "agent execute-mclaude",
        "agent execute-mclaude",
        "agent execute-mclaude",
        "stage-finished execute-mclaude",
        "stage-started extract-git-artifacts",
        "stage-finished extract-git-artifacts",
        "stage-started record",
        "stage-finished record"
      ])
      expect(events.filter((e) => e.kind === "agent").map((e) => e.message)).toEqual([
        "agent started (model claude-sonnet-4-5, 2 tools)",
        "says: looking around",
        "says: all good",
        "finished: success, 1 turns"
      ])
      // In the order they happened.
      const times = events.map((e) => e.at.getTime())
      expect([...times].sort((a, b) => a - b)).toEqual(times)
    })
  )

  it.effect("stageline logs --follow prints them live and stops when the request ends", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const env = yield* cliEnv
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt)
        VALUES (${"@sleep 800\n@say done waiting"}) RETURNING id`
      const follower = startCli(["logs", row!.id, "--follow"], env)
      const worker = yield* Effect.promise(() => runCli(["run", "--once", "--pipeline", writePipeline().file], env))
      expect(worker.code).toBe(0)
      const { code } = yield* Effect.promise(() => follower.exited)
      expect(code).toBe(0)
      const out = follower.output()
      expect(out).toMatch(/#1 claim\s+claimed by/)
      expect(out).toMatch(/#1 execute-mclaude\s+says: done waiting/)
      expect(out).toMatch(/#1 record\s+ok in \d+ ms/)
      // The request's own line, one state after another, ending with every stage done.
      const short = row!.id.slice(0, 8)
      expect(out).toContain(`${short} #1  ✓ claim  ▸ prepare-workspace`)
      expect(out).toMatch(
        new RegExp(
          `${short} #1  ✓ claim  ✓ prepare-workspace \\S+ m?s  ✓ customize-skill \\S+ m?s  ✓ execute-mclaude \\S+ m?s  ✓ extract-git-artifacts \\S+ m?s  ✓ record \\S+ m?s  — done in \\S+ m?s\n`
        )
      )
      expect(out.trim().split("\n").at(-1)).toBe(`request ${row!.id} is completed`)
      const once = yield* Effect.promise(() => runCli(["logs", row!.id], env))
      expect(once.output).toContain("execute-mclaude")
      const nothing = yield* Effect.promise(() => runCli(["logs"], env))
      expect(nothing.code).toBe(1)
      expect(nothing.output).toContain("give a request id, or --follow to watch every request")
      const missing = yield* Effect.promise(() => runCli(["logs", "00000000-0000-0000-0000-000000000000"], env))
      expect(missing.code).toBe(1)
      expect(missing.output).toContain("no request 00000000-0000-0000-0000-000000000000")
    })
  )

  it.effect("stageline logs --follow without an id shows a live line for every request", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const env = yield* cliEnv
      const follower = startCli(["logs", "--follow"], env)
      yield* Effect.promise(() =>
        waitFor("the follower to start", async () => follower.output().includes("following every request"), startup)
      )
      const ids = yield* Effect.forEach(["@say first", "@sleep 300\n@say second"], (prompt) =>
        sql<{ id: string }>`INSERT INTO orchestration_requests (prompt) VALUES (${prompt}) RETURNING id`.pipe(
          Effect.map((r) => r[0]!.id)
        )
      )
      const worker = yield* Effect.promise(() => runCli(["run", "--once", "--pipeline", writePipeline().file], env))
      expect(worker.code).toBe(0)
      yield* Effect.promise(() =>
        waitFor("both lines to end", async () =>
          ids.every((id) => new RegExp(`${id.slice(0, 8)} #1  ✓ claim .*✓ record .*— done in`).test(follower.output()))
        )
      )
      follower.child.kill("SIGINT")
      yield* Effect.promise(() => follower.exited)
      for (const id of ids) {
        const lines = follower
          .output()
          .split("\n")
          .filter((l) => l.startsWith(id.slice(0, 8)))
        // One state after another: each line extends the one before.
        expect(lines.length).toBeGreaterThanOrEqual(10)
        expect(lines.at(-1)).toMatch(/✓ execute-mclaude \S+ m?s {2}✓ extract-git-artifacts \S+ m?s {2}✓ record/)
      }
    })
  )

  it.effect("a batch that names a deleted request still writes the events of the others, each at its own time", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const [kept, deleted] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt)
        VALUES ('kept'), ('deleted') RETURNING id`
      const before = Date.now()
      yield* Effect.scoped(
        Effect.gen(function* () {
          const log = yield* EventLog.make
          // Deleted before its events are written, as an operator may delete a request that is running.
          yield* sql`DELETE FROM orchestration_requests WHERE id = ${deleted!.id}`
          for (const request of [kept!, deleted!]) {
            yield* log.onEvent({ _tag: "StageStarted", requestId: request.id, attempt: 1, stage: "noop" })
          }
          // Within the writer's wait: most often the same batch, and the times must tell the two apart.
          yield* Effect.sleep(30)
          yield* log.onEvent({ _tag: "StageStarted", requestId: kept!.id, attempt: 1, stage: "noop" })
        })
      )
      const after = Date.now()
      // Written by the writer's turn or, at the latest, by the scope's close.
      const events = yield* sql<{ request_id: string; kind: string; at: Date }>`SELECT request_id, kind, at
        FROM orchestration_events WHERE request_id IN (${kept!.id}, ${deleted!.id}) ORDER BY id`
      expect(events.map(({ request_id, kind }) => ({ request_id, kind }))).toEqual([
        { request_id: kept!.id, kind: "stage-started" },
        { request_id: kept!.id, kind: "stage-started" }
      ])
      // Each at the moment it was queued, not when its batch was written.
      const [first, second] = events.map((e) => e.at.getTime())
      expect(first).toBeGreaterThanOrEqual(before)
      expect(second! - first!).toBeGreaterThanOrEqual(30)
      expect(second).toBeLessThanOrEqual(after)
    })
  )
})
