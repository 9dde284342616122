/**
 * The worker as an operating-system process: started from the CLI, stopped with signals.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { DatabaseUrl } from "../../src/db/Database.js"
import { runCli, startCli, waitFor } from "../support/cli.js"
import { tempDir, writePipeline } from "../support/harness.js"
import { freePort } from "../support/ports.js"
import { isRunning } from "../support/processes.js"
import { TestDatabase } from "../support/TestDatabase.js"

layer(TestDatabase, { excludeTestServices: true, timeout: "90 seconds" })("the worker process", (it) => {
  const setup = Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const url = Redacted.value(yield* DatabaseUrl)
    yield* sql`DELETE FROM orchestration_results`
    yield* sql`DELETE FROM orchestration_requests`
    const pipeline = writePipeline()
    const env = { DATABASE_URL: url, WORKSPACE_BASE: tempDir("ws"), WORKER_COUNT: "2" }
    const insert = (prompt: string, metadata: Record<string, string> | null = null) =>
      Effect.runPromise(
        sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, metadata)
          VALUES (${prompt}, ${metadata && JSON.stringify(metadata)}::jsonb) RETURNING id`.pipe(
          Effect.map((r) => r[0]!.id)
        )
      )
    const row = (id: string) =>
      Effect.runPromise(
        sql<{ status: string; attempts: number; claimed_by: string | null }>`SELECT status, attempts, claimed_by
          FROM orchestration_requests WHERE id = ${id}`.pipe(Effect.map((r) => r[0]!))
      )
    const results = (id: string) =>
      Effect.runPromise(sql<{ status: string }>`SELECT status FROM orchestration_results WHERE request_id = ${id}`)
    return { pipeline, env, insert, row, results }
  })

  it.effect("picks up a new request at once, without waiting for the poll", () =>
    Effect.gen(function* () {
      const { pipeline, env, insert, row } = yield* setup
      const worker = startCli(["run", "--pipeline", pipeline.file], { ...env, POLL_INTERVAL_MS: "600000" })
      yield* Effect.promise(async () => {
        await waitFor("the worker to start listening", async () => worker.output().includes("running pipeline"))
        // Even the first poll is ten minutes away: only the NOTIFY can wake the worker in time.
        await new Promise((r) => setTimeout(r, 300))
        const id = await insert("@say quick")
        await waitFor("the request to complete", async () => (await row(id)).status === "completed", 15_000)
        worker.child.kill("SIGTERM")
        expect((await worker.exited).code).toBe(0)
      })
    })
  )

  it.effect("on SIGTERM stops claiming, lets the request in flight finish, and exits 0", () =>
    Effect.gen(function* () {
      const { pipeline, env, insert, row, results } = yield* setup
      const worker = startCli(["run", "--pipeline", pipeline.file], env)
      yield* Effect.promise(async () => {
        const id = await insert("@sleep 1500\n@say finished")
        await waitFor("the request to be claimed", async () => (await row(id)).status === "processing")
        worker.child.kill("SIGTERM")
        await waitFor("the worker to start draining", async () => worker.output().includes("shutting down"))
        const later = await insert("@say never")
        const { code } = await worker.exited
        expect(code).toBe(0)
        expect(await row(id)).toMatchObject({ status: "completed" })
        expect(await results(id)).toEqual([{ status: "success" }])
        // Inserted after the signal: left for another worker.
        expect(await row(later)).toMatchObject({ status: "pending", attempts: 0 })
      })
    })
  )

  it.effect("on SIGTERM amid a stream of requests leaves none claimed: what it claimed ahead goes back", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { env } = yield* setup
      // claim → record: each record claims the fiber's next request in its own statement.
      const pipeline = writePipeline({ stages: "\n  - claim\n  - record\n" })
      yield* sql`INSERT INTO orchestration_requests (prompt) SELECT 'p' || n FROM generate_series(1, 3000) AS n`
      const worker = startCli(["run", "--pipeline", pipeline.file], env)
      const counts = () =>
        Effect.runPromise(
          sql<{ status: string; n: number; unclaimed: boolean }>`SELECT status, count(*)::int AS n,
              bool_and(claimed_by IS NULL AND attempts = 0) AS unclaimed
            FROM orchestration_requests GROUP BY status`
        )
      yield* Effect.promise(async () => {
        await waitFor(
          "some requests to complete",
          async () => ((await counts()).find((c) => c.status === "completed")?.n ?? 0) >= 50,
          15_000
        )
        worker.child.kill("SIGTERM")
        expect((await worker.exited).code).toBe(0)
      })
      const byStatus = new Map((yield* Effect.promise(counts)).map((c) => [c.status, c]))
      expect(byStatus.has("processing")).toBe(false)
      const completed = byStatus.get("completed")?.n ?? 0
      const pending = byStatus.get("pending")
      // Stopped before the end of the queue: the rest is pending again, its attempts untouched.
      expect(pending?.unclaimed).toBe(true)
      expect(completed + (pending?.n ?? 0)).toBe(3000)
      const [results] = yield* sql<{ n: number; requests: number }>`SELECT count(*)::int AS n,
          count(DISTINCT request_id)::int AS requests FROM orchestration_results`
      expect(results).toEqual({ n: completed, requests: completed })
    })
  )

  it.effect(
    "after the grace period interrupts, ends the agent, and puts the request back without using an attempt",
    () =>
      Effect.gen(function* () {
        const { pipeline, env, insert, row, results } = yield* setup
        const pidFile = path.join(tempDir("pids"), "pids.json")
        const worker = startCli(["run", "--pipeline", pipeline.file], { ...env, STAGELINE_SHUTDOWN_GRACE_MS: "300" })
        yield* Effect.promise(async () => {
          const id = await insert("@ignore-sigterm\n@hang", { pidFile })
          await waitFor("the agent to start", async () => fs.existsSync(pidFile) && fs.statSync(pidFile).size > 0)
          const pids = JSON.parse(fs.readFileSync(pidFile, "utf8")) as Array<number>
          worker.child.kill("SIGTERM")
          const { code } = await worker.exited
          expect(code).toBe(0)
          expect(await row(id)).toEqual({ status: "pending", attempts: 0, claimed_by: null })
          expect(await results(id)).toEqual([])
          expect(pids.filter(isRunning)).toEqual([])
        })
      })
  )

  it.effect("on a second signal stops at once: interrupts, ends the agent, and puts the request back", () =>
    Effect.gen(function* () {
      const { pipeline, env, insert, row, results } = yield* setup
      const pidFile = path.join(tempDir("pids"), "pids.json")
      const worker = startCli(["run", "--pipeline", pipeline.file], env)
      yield* Effect.promise(async () => {
        const id = await insert("@hang", { pidFile })
        await waitFor("the agent to start", async () => fs.existsSync(pidFile) && fs.statSync(pidFile).size > 0)
        const pids = JSON.parse(fs.readFileSync(pidFile, "utf8")) as Array<number>
        worker.child.kill("SIGINT")
        await waitFor("the worker to start draining", async () => worker.output().includes("shutting down"))
        // The grace is a minute; the second signal does not wait for it.
        worker.child.kill("SIGINT")
        const { code } = await worker.exited
        expect(code).toBe(0)
        expect(worker.output()).toContain("stopping now")
        expect(await row(id)).toEqual({ status: "pending", attempts: 0, claimed_by: null })
        expect(await results(id)).toEqual([])
        expect(pids.filter(isRunning)).toEqual([])
      })
    })
  )

  it.effect("with --once processes what is pending and exits 0", () =>
    Effect.gen(function* () {
      const { pipeline, env, insert, row } = yield* setup
      yield* Effect.promise(async () => {
        const ids = [await insert("@say one"), await insert("@say two"), await insert("@say three")]
        const { code, output } = await runCli(["run", "--once", "--pipeline", pipeline.file], env)
        expect(code).toBe(0)
        expect(output).toContain("processed 3 request(s), 0 of them failed")
        for (const id of ids) expect((await row(id)).status).toBe("completed")
      })
    })
  )
  it.effect("waits for a database that is not up yet, then works", () =>
    Effect.gen(function* () {
      const { pipeline, env, insert, row } = yield* setup
      // The database's address, but nothing listens there until the test starts forwarding to the server.
      const target = new URL(env.DATABASE_URL)
      const port = yield* Effect.promise(freePort)
      const url = new URL(env.DATABASE_URL)
      url.host = `127.0.0.1:${port}`
      const worker = startCli(["run", "--pipeline", pipeline.file], { ...env, DATABASE_URL: url.toString() })
      const forwarder = net.createServer((client) => {
        const upstream = net.connect(Number(target.port || 5432), target.hostname)
        client.pipe(upstream).pipe(client)
        client.on("error", () => upstream.destroy())
        upstream.on("error", () => client.destroy())
      })
      yield* Effect.promise(async () => {
        await waitFor("the worker to report waiting", async () => worker.output().includes("waiting for the database"))
        expect(isRunning(worker.child.pid!)).toBe(true)
        await new Promise<void>((resolve) => forwarder.listen(port, "127.0.0.1", resolve))
        const id = await insert("@say late database")
        await waitFor("the request to complete", async () => (await row(id)).status === "completed", 30_000)
        worker.child.kill("SIGTERM")
        expect((await worker.exited).code).toBe(0)
      }).pipe(Effect.ensuring(Effect.promise(() => new Promise((resolve) => forwarder.close(resolve)))))
    })
  )
})
