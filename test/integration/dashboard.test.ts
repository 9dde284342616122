/**
 * The dashboard against a real worker process taking real requests (the agent is the test double): its
 * JSON endpoints, and its pages in headless Chromium, with screenshots kept in test/artifacts/.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { vi } from "vitest"
import { DatabaseUrl } from "../../src/db/Database.js"
import { artifactsDir, chromiumPath, haveChromium, launch } from "../support/browser.js"
import { type Running, startCli, startup, waitFor } from "../support/cli.js"
import { tempDir, writePipeline } from "../support/harness.js"
import { freePort } from "../support/ports.js"
import { TestDatabase } from "../support/TestDatabase.js"

// Each test starts worker processes; on a busy machine that alone takes many seconds.
vi.setConfig({ testTimeout: 180_000 })

if (!haveChromium) {
  console.warn(
    `dashboard browser test skipped: ${chromiumPath} is not installed (apt-get install -y chromium; .ci/run does it)`
  )
}

layer(TestDatabase, { excludeTestServices: true, timeout: "150 seconds" })("the dashboard", (it) => {
  /** A worker with its server on a free port, two fibers, and the queue sampled five times a second. */
  const worker = Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`DELETE FROM orchestration_results`
    yield* sql`DELETE FROM orchestration_requests`
    const port = yield* Effect.promise(freePort)
    const url = Redacted.value(yield* DatabaseUrl)
    const running = yield* Effect.acquireRelease(
      Effect.sync(() =>
        startCli(["run", "--pipeline", writePipeline().file], {
          DATABASE_URL: url,
          WORKSPACE_BASE: tempDir("ws"),
          WORKER_COUNT: "2",
          STAGELINE_MAX_ATTEMPTS: "1",
          STAGELINE_HTTP_PORT: String(port),
          STAGELINE_HTTP_HOST: "127.0.0.1",
          STAGELINE_QUEUE_SAMPLE_MS: "200",
          LOG_LEVEL: "warning"
        })
      ),
      (w: Running) =>
        Effect.promise(async () => {
          w.child.kill("SIGTERM")
          await w.exited
        })
    )
    yield* Effect.promise(() =>
      waitFor(
        "the server to listen",
        async () => {
          const r = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null)
          return r?.status === 200
        },
        startup
      )
    )
    const insert = (prompt: string, runAfter = "now()") =>
      Effect.runPromise(
        sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, run_after)
          VALUES (${prompt}, ${sql.unsafe(runAfter)}) RETURNING id`.pipe(Effect.map((r) => r[0]!.id))
      )
    const statusOf = (id: string) =>
      Effect.runPromise(
        sql<{ status: string }>`SELECT status FROM orchestration_requests WHERE id = ${id}`.pipe(
          Effect.map((r) => r[0]!.status)
        )
      )
    const settled = (id: string) =>
      waitFor(`request ${id} to finish`, async () => ["completed", "failed"].includes(await statusOf(id)), 60_000)
    /** One success, one error and one request scheduled an hour ahead, the first two finished. */
    const seed = async () => {
      const done = await insert("@say done")
      const broken = await insert("@error refused")
      await insert("@say later", "now() + interval '1 hour'")
      await settled(done)
      await settled(broken)
      return { done, broken }
    }
    return { base: `http://127.0.0.1:${port}`, running, insert, statusOf, settled, seed }
  })

  interface Sample {
    readonly at: number
    readonly ready: number
    readonly scheduled: number
    readonly processing: number
  }
  /** The fields of every endpoint's JSON that the test reads. */
  interface Json {
    readonly inFlight: ReadonlyArray<{ readonly id: string; readonly stage: string | null }>
    readonly recent: ReadonlyArray<unknown>
    readonly depth: Omit<Sample, "at">
    readonly history: ReadonlyArray<Sample>
    readonly request: unknown
    readonly results: ReadonlyArray<unknown>
    readonly status: string
    readonly events: ReadonlyArray<{ readonly id: string; readonly kind: string; readonly stage: string | null }>
  }
  const getJson = async (url: string) => {
    const response = await fetch(url)
    return { status: response.status, body: (await response.json()) as Json }
  }

  it.effect("serves the queue, the requests in flight, recent results and one request's events as JSON", () =>
    Effect.gen(function* () {
      const { base, insert, statusOf, settled, seed } = yield* worker
      yield* Effect.promise(async () => {
        const { done, broken } = await seed()
        const slow = await insert("@sleep 4000\n@say slow")
        await waitFor("the slow request to run", async () => (await statusOf(slow)) === "processing")
        await waitFor("it to reach the agent", async () => {
          const { body } = await getJson(`${base}/api/requests`)
          return body.inFlight.some((r) => r.id === slow && r.stage === "execute-mclaude")
        })
        const requests = await getJson(`${base}/api/requests`)
        expect(requests.body.inFlight).toEqual([
          expect.objectContaining({ id: slow, attempts: 1, stage: "execute-mclaude", claimed_by: expect.any(String) })
        ])
        expect(requests.body.recent).toEqual(
          expect.arrayContaining([
            expect.objectContaining({ request_id: done, status: "success", cost_usd: "0.001200" }),
            expect.objectContaining({ request_id: broken, status: "error", error: expect.stringContaining("refused") })
          ])
        )
        const queue = await getJson(`${base}/api/queue`)
        expect(queue.body.depth).toEqual({ ready: 0, scheduled: 1, processing: 1 })
        // Sampled every 200 ms: the history catches up with the depth.
        await waitFor("the history to show the slow request", async () => {
          const { body } = await getJson(`${base}/api/queue`)
          return body.history.some((s) => s.processing === 1 && s.scheduled === 1)
        })
        const { history } = (await getJson(`${base}/api/queue`)).body
        expect(history[0]).toEqual({
          at: expect.any(Number),
          ready: expect.any(Number),
          scheduled: expect.any(Number),
          processing: expect.any(Number)
        })
        expect(history.map((s) => s.at)).toEqual([...history.map((s) => s.at)].sort((a, b) => a - b))

        const detail = await getJson(`${base}/api/requests/${done}`)
        expect(detail.body.request).toMatchObject({ id: done, status: "completed", prompt: "@say done" })
        expect(detail.body.results).toEqual([expect.objectContaining({ attempt: 1, status: "success" })])
        const all = await getJson(`${base}/api/requests/${done}/events`)
        expect(all.body.status).toBe("completed")
        const kinds = all.body.events.map((e) => `${e.kind} ${e.stage}`)
        expect(kinds[0]).toBe("claimed claim")
        expect(kinds.at(-1)).toBe("stage-finished record")
        // The cursor: only what came after.
        const later = await getJson(`${base}/api/requests/${done}/events?after=${all.body.events.at(-2)!.id}`)
        expect(later.body.events.map((e) => e.id)).toEqual([all.body.events.at(-1)!.id])

        expect((await getJson(`${base}/api/requests/00000000-0000-4000-8000-000000000000`)).status).toBe(404)
        expect((await getJson(`${base}/api/requests/not-an-id/events`)).status).toBe(404)
        const page = await fetch(`${base}/`)
        expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8")
        expect(await page.text()).toContain('<script src="/dashboard.js"></script>')
        await settled(slow)
      })
    }).pipe(Effect.scoped)
  )

  it.effect.skipIf(!haveChromium)(
    "shows it in a browser: queue chart, in-flight stage, results, and a request's events live",
    () =>
      Effect.gen(function* () {
        const { base, insert, statusOf, seed } = yield* worker
        const browser = yield* Effect.acquireRelease(
          Effect.promise(() => launch()),
          (b) => Effect.promise(() => b.close())
        )
        fs.mkdirSync(artifactsDir, { recursive: true })
        yield* Effect.promise(async () => {
          const page = await browser.newPage()
          await page.goto(`${base}/`)
          const { done, broken } = await seed()
          const slow = await insert("@sleep 6000\n@say slow")
          await waitFor("the slow request to run", async () => (await statusOf(slow)) === "processing")

          const inFlightRow = page.locator(`[data-testid="in-flight"] tr[data-request="${slow}"]`)
          await inFlightRow.locator("td.stage", { hasText: "execute-mclaude" }).waitFor({ timeout: 20_000 })
          const recent = page.locator('[data-testid="recent"]')
          await recent.locator(`tr[data-request="${done}"] td.status`, { hasText: "success" }).waitFor()
          await recent.locator(`tr[data-request="${broken}"] td.status`, { hasText: "error" }).waitFor()
          expect(await recent.locator(`tr[data-request="${done}"] td.cost`).textContent()).toBe("0.001200")
          expect(await recent.locator(`tr[data-request="${done}"] td.duration`).textContent()).toMatch(
            /^\d+(\.\d)? m?s$/
          )
          expect(await page.getByTestId("depth").textContent()).toBe("0 ready, 1 scheduled, 1 processing")
          const points = await page.locator('polyline[data-series="processing"]').getAttribute("points")
          expect(points!.split(" ").length).toBeGreaterThan(1)
          await page.screenshot({ path: path.join(artifactsDir, "dashboard.png"), fullPage: true })

          // The request's own page, opened while it runs: its events arrive without a reload.
          await inFlightRow.locator("a").click()
          await page.waitForURL(`${base}/requests/${slow}`)
          const events = page.locator('[data-testid="events"]')
          await events.locator('tr[data-kind="stage-started"][data-stage="execute-mclaude"]').waitFor()
          expect(await page.getByTestId("live").textContent()).toBe("live")
          expect(await events.locator('tr[data-stage="record"]').count()).toBe(0)
          await events.locator('tr[data-kind="stage-finished"][data-stage="record"]').waitFor({ timeout: 30_000 })
          await page.getByTestId("live").filter({ hasText: "completed" }).waitFor()
          expect(await page.getByTestId("status").textContent()).toBe("completed")
          expect(await page.locator('[data-testid="results"] td.status').allTextContents()).toEqual(["success"])
          expect(await events.locator('tr[data-kind="agent"]').allTextContents()).toEqual(
            expect.arrayContaining([expect.stringContaining("says: slow")])
          )
          await page.screenshot({ path: path.join(artifactsDir, "request.png"), fullPage: true })
          for (const shot of ["dashboard.png", "request.png"]) {
            expect(fs.statSync(path.join(artifactsDir, shot)).size).toBeGreaterThan(10_000)
          }
        })
      }).pipe(Effect.scoped)
  )
})
