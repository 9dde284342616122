/**
 * /healthz and /readyz: from a real worker process (alive, ready, then draining on SIGTERM), and from the
 * server on its own against databases that are not ready (never migrated, gone).
 */
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Exit, Layer, Logger, LogLevel, Redacted, Scope } from "effect"
import { vi } from "vitest"
import { RegistryLive } from "../../src/cli/Cli.js"
import { WorkerConfig } from "../../src/config/WorkerConfig.js"
import { DatabaseUrl } from "../../src/db/Database.js"
import { migrate } from "../../src/db/Migrator.js"
import * as StatusServer from "../../src/http/StatusServer.js"
import { load } from "../../src/pipeline/Compiler.js"
import { Lifecycle } from "../../src/worker/Lifecycle.js"
import * as Worker from "../../src/worker/Worker.js"
import { startCli, startup, waitFor } from "../support/cli.js"
import { tempDir, writePipeline } from "../support/harness.js"
import { freePort } from "../support/ports.js"
import { freshDatabase, TestClient, TestDatabase } from "../support/TestDatabase.js"

// Each test starts worker processes; on a busy machine that alone takes many seconds.
vi.setConfig({ testTimeout: 180_000 })

const quiet = Logger.minimumLogLevel(LogLevel.Error)

const get = async (url: string) => {
  const response = await fetch(url)
  return { status: response.status, body: (await response.json()) as Record<string, unknown> }
}

layer(TestDatabase, { excludeTestServices: true, timeout: "90 seconds" })("a worker's health endpoints", (it) => {
  it.effect("are alive and ready while it runs, and not ready (but alive) once it drains", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const port = yield* Effect.promise(freePort)
      const base = `http://127.0.0.1:${port}`
      const worker = startCli(["run", "--pipeline", writePipeline().file], {
        DATABASE_URL: Redacted.value(yield* DatabaseUrl),
        WORKSPACE_BASE: tempDir("ws"),
        STAGELINE_HTTP_PORT: String(port),
        STAGELINE_HTTP_HOST: "127.0.0.1"
      })
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt)
        VALUES (${"@sleep 2500\n@say done"}) RETURNING id`
      yield* Effect.promise(async () => {
        await waitFor("the server to listen", async () => worker.output().includes("Listening on"), startup)
        // Up before the migrations: alive from the start, with the supervisor starting, then running.
        await waitFor("the supervisor to run", async () => (await get(`${base}/healthz`)).body.supervisor === "running")
        expect(await get(`${base}/healthz`)).toEqual({
          status: 200,
          body: { status: "alive", alive: true, supervisor: "running" }
        })
        expect(await get(`${base}/readyz`)).toEqual({
          status: 200,
          body: { status: "ready", ready: true, reasons: [] }
        })
        await waitFor("the request to run", async () =>
          Effect.runPromise(
            sql<{ status: string }>`SELECT status FROM orchestration_requests WHERE id = ${row!.id}`.pipe(
              Effect.map((r) => r[0]?.status === "processing")
            )
          )
        )
        worker.child.kill("SIGTERM")
        await waitFor("the worker to drain", async () => worker.output().includes("shutting down"))
        const draining = await get(`${base}/readyz`)
        expect(draining.status).toBe(503)
        expect(draining.body.reasons).toEqual(["the worker is draining (shutting down)"])
        expect((await get(`${base}/healthz`)).status).toBe(200)
        expect((await worker.exited).code).toBe(0)
      })
    })
  )

  it.effect("is not alive once its supervisor has stopped", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(freePort)
      const compiled = yield* load(writePipeline().file).pipe(Effect.provide(RegistryLive))
      const healthz = () => Effect.promise(() => get(`http://127.0.0.1:${port}/healthz`))
      yield* Effect.gen(function* () {
        expect((yield* healthz()).body).toMatchObject({ alive: true, supervisor: "starting" })
        // --once on an empty queue: the supervisor's fibers end at once.
        yield* Worker.run(compiled)
        expect(yield* healthz()).toEqual({
          status: 503,
          body: { status: "stopped", alive: false, supervisor: "stopped" }
        })
      }).pipe(
        Effect.provide(
          StatusServer.layer.pipe(
            Layer.provideMerge(Worker.stageServices(compiled, { once: true })),
            Layer.provideMerge(
              WorkerConfig.layer({ httpPort: port, httpHost: "127.0.0.1", workspaceBase: tempDir("ws") })
            ),
            Layer.provideMerge(NodeContext.layer)
          )
        ),
        Effect.scoped
      )
    }).pipe(Effect.provide(quiet))
  )

  it.effect("has no server when STAGELINE_HTTP_PORT is unset", () =>
    Effect.gen(function* () {
      const worker = startCli(["run", "--once", "--pipeline", writePipeline().file], {
        DATABASE_URL: Redacted.value(yield* DatabaseUrl),
        WORKSPACE_BASE: tempDir("ws"),
        STAGELINE_HTTP_PORT: undefined
      })
      const { code } = yield* Effect.promise(() => worker.exited)
      expect(code).toBe(0)
      expect(worker.output()).toContain("processed 0 request(s)")
      expect(worker.output()).not.toContain("Listening on")
    })
  )
})

/** Runs `effect` with the server alone up on `port`, on the database at `url`, with a lifecycle to drain. */
const onServer =
  (port: number, url: string) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    effect.pipe(
      Effect.provide(
        StatusServer.layer.pipe(
          Layer.provideMerge(
            Layer.mergeAll(
              Lifecycle.layer({ once: false }),
              WorkerConfig.layer({ httpPort: port, httpHost: "127.0.0.1" }),
              NodeContext.layer,
              quiet
            )
          ),
          Layer.provideMerge(TestClient),
          Layer.provide(Layer.succeed(DatabaseUrl, Redacted.make(url)))
        )
      ),
      Effect.scoped
    )

describe("readiness against a database that is not ready", () => {
  layer(Layer.empty, { excludeTestServices: true, timeout: "60 seconds" })("", (it) => {
    it.effect("names the migrations not applied yet, then is ready once they are", () =>
      Effect.gen(function* () {
        const port = yield* Effect.promise(freePort)
        const { url } = yield* freshDatabase
        yield* Effect.gen(function* () {
          const before = yield* Effect.promise(() => get(`http://127.0.0.1:${port}/readyz`))
          expect(before.status).toBe(503)
          expect(before.body.reasons).toEqual([
            expect.stringMatching(/^migrations not applied: 1_queue, 2_leases_retries_cancellation, .*4_safer/)
          ])
          yield* migrate()
          expect((yield* Effect.promise(() => get(`http://127.0.0.1:${port}/readyz`))).status).toBe(200)
          yield* Lifecycle.drain
          const drained = yield* Effect.promise(() => get(`http://127.0.0.1:${port}/readyz`))
          expect(drained.body.reasons).toEqual(["the worker is draining (shutting down)"])
        }).pipe(onServer(port, url))
      }).pipe(Effect.scoped)
    )

    it.effect("says the database does not answer once it is gone", () =>
      Effect.gen(function* () {
        const port = yield* Effect.promise(freePort)
        const databaseScope = yield* Scope.make()
        const { url } = yield* Scope.extend(freshDatabase, databaseScope)
        yield* Effect.gen(function* () {
          yield* migrate()
          expect((yield* Effect.promise(() => get(`http://127.0.0.1:${port}/readyz`))).status).toBe(200)
          // Dropped with FORCE: its connections are ended and new ones are refused.
          yield* Scope.close(databaseScope, Exit.void)
          const gone = yield* Effect.promise(() => get(`http://127.0.0.1:${port}/readyz`))
          expect(gone.status).toBe(503)
          expect(gone.body.reasons).toEqual([expect.stringMatching(/^the database does not answer: /)])
          const alive = yield* Effect.promise(() => get(`http://127.0.0.1:${port}/healthz`))
          expect(alive).toMatchObject({ status: 200, body: { supervisor: "starting" } })
        }).pipe(onServer(port, url))
      }).pipe(Effect.scoped)
    )
  })
})
