/**
 * /metrics and the log lines of a real worker process taking real requests through the pipeline (the
 * agent is the test double): what it counts must agree with what it wrote to the database.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { vi } from "vitest"
import { DatabaseUrl } from "../../src/db/Database.js"
import { startCli, startup, waitFor } from "../support/cli.js"
import { stagesAfterClaim, tempDir, writePipeline } from "../support/harness.js"
import { freePort } from "../support/ports.js"
import { parsePrometheus, sumOf } from "../support/prometheus.js"
import { TestDatabase } from "../support/TestDatabase.js"

// Each test starts worker processes; on a busy machine that alone takes many seconds.
vi.setConfig({ testTimeout: 180_000 })

layer(TestDatabase, { excludeTestServices: true, timeout: "120 seconds" })("a worker's metrics", (it) => {
  it.effect("count requests, attempts, stages, pickups, cost and tokens, and read the queue from the database", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const port = yield* Effect.promise(freePort)
      const worker = startCli(["run", "--pipeline", writePipeline().file], {
        DATABASE_URL: Redacted.value(yield* DatabaseUrl),
        WORKSPACE_BASE: tempDir("ws"),
        STAGELINE_HTTP_PORT: String(port),
        STAGELINE_HTTP_HOST: "127.0.0.1",
        STAGELINE_MAX_ATTEMPTS: "1",
        LOG_LEVEL: "debug"
      })
      const scrape = async () => {
        const response = await fetch(`http://127.0.0.1:${port}/metrics`)
        expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8")
        return parsePrometheus(await response.text())
      }
      const run = <A>(effect: Effect.Effect<A, unknown>) => Effect.runPromise(effect)
      const insert = (prompt: string, runAfter = "now()") =>
        run(
          sql<{ id: string }>`INSERT INTO orchestration_requests (prompt, run_after)
            VALUES (${prompt}, ${sql.unsafe(runAfter)}) RETURNING id`.pipe(Effect.map((r) => r[0]!.id))
        )
      const statusOf = (id: string) =>
        run(
          sql<{ status: string }>`SELECT status FROM orchestration_requests WHERE id = ${id}`.pipe(
            Effect.map((r) => r[0]!.status)
          )
        )

      yield* Effect.promise(async () => {
        await waitFor("the server to listen", async () => worker.output().includes("Listening on"), startup)
        const ok = [await insert("@say one"), await insert("@say two")]
        const broken = await insert("@error the model refused")
        await insert("@say later", "now() + interval '1 hour'")
        for (const id of [...ok, broken]) {
          await waitFor(`request ${id} to finish`, async () => ["completed", "failed"].includes(await statusOf(id)))
        }
        const slow = await insert("@sleep 3000\n@say slow")
        await waitFor("the slow request to run", async () => (await statusOf(slow)) === "processing")
        const during = await scrape()
        expect(sumOf(during, "stageline_in_flight")).toBe(1)
        expect(sumOf(during, "stageline_requests_processing")).toBe(1)
        await waitFor("the slow request to finish", async () => (await statusOf(slow)) === "completed")
        // Its status commits a moment before its run has left the last stage.
        await waitFor(
          "the request to leave the pipeline",
          async () => sumOf(await scrape(), "stageline_in_flight") === 0
        )

        const after = await scrape()
        expect(sumOf(after, "stageline_in_flight")).toBe(0)
        expect(sumOf(after, "stageline_requests_processing")).toBe(0)
        expect(sumOf(after, "stageline_queue_depth", { state: "scheduled" })).toBe(1)
        expect(sumOf(after, "stageline_queue_depth", { state: "ready" })).toBe(0)
        expect(sumOf(after, "stageline_database_up")).toBe(1)
        expect(sumOf(after, "stageline_requests_total", { status: "success" })).toBe(3)
        expect(sumOf(after, "stageline_requests_total", { status: "error" })).toBe(1)
        expect(sumOf(after, "stageline_attempts_total", { retried: "false" })).toBe(4)
        expect(sumOf(after, "stageline_pickup_latency_seconds_count")).toBe(4)

        // One series per stage and outcome; the claim's wait for work is not a stage duration.
        for (const stage of stagesAfterClaim) {
          expect(sumOf(after, "stageline_stage_duration_seconds_count", { stage })).toBe(4)
          const buckets = after.filter(
            (s) =>
              s.name === "stageline_stage_duration_seconds_bucket" &&
              s.labels.stage === stage &&
              s.labels.outcome === "ok"
          )
          const counts = buckets.map((b) => b.value)
          expect([...counts].sort((a, b) => a - b)).toEqual(counts)
          expect(buckets.at(-1)).toMatchObject({ labels: { le: "+Inf" }, value: 4 })
        }
        expect(after.some((s) => s.labels.stage === "claim")).toBe(false)

        // Cost and tokens as the results table has them.
        const [totals] = await run(
          sql<{ cost: number; input: number; output: number }>`SELECT sum(cost_usd)::float8 AS cost,
              sum((usage->>'input_tokens')::int)::int AS input, sum((usage->>'output_tokens')::int)::int AS output
            FROM orchestration_results`
        )
        expect(totals!.cost).toBeGreaterThan(0)
        expect(sumOf(after, "stageline_agent_cost_usd_total")).toBeCloseTo(totals!.cost, 9)
        expect(sumOf(after, "stageline_agent_tokens_total", { kind: "input" })).toBe(totals!.input)
        expect(sumOf(after, "stageline_agent_tokens_total", { kind: "output" })).toBe(totals!.output)

        worker.child.kill("SIGTERM")
        expect((await worker.exited).code).toBe(0)

        // Every log line is JSON, and every line about one of these requests names it, its attempt,
        // its stage and the worker.
        const lines = worker
          .output()
          .trim()
          .split("\n")
          .map((line) => JSON.parse(line) as { message: unknown; annotations: Record<string, unknown> })
        const ids = [...ok, broken, slow]
        const aboutRequests = lines.filter(
          (l) => ids.some((id) => JSON.stringify(l.message).includes(id)) || l.annotations.request_id
        )
        expect(aboutRequests.length).toBeGreaterThan(ids.length * 3)
        for (const line of aboutRequests) {
          expect(line.annotations).toEqual(
            expect.objectContaining({
              request_id: expect.any(String),
              attempt: 1,
              stage: expect.any(String),
              worker_id: expect.stringMatching(/\/1$/)
            })
          )
        }
        // And the stage is the one the line comes from.
        const stageOf = (prefix: string) =>
          new Set(aboutRequests.filter((l) => String(l.message).startsWith(prefix)).map((l) => l.annotations.stage))
        expect(stageOf("claimed request")).toEqual(new Set(["claim"]))
        expect(stageOf("running ")).toEqual(new Set(["execute-mclaude"]))
        expect(stageOf("recorded ")).toEqual(new Set(["record"]))
      })
    })
  )
})
