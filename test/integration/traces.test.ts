/**
 * Traces: a span per request with one child per stage, caught in memory from the engine in this process,
 * and exported over OTLP HTTP by a real worker process to a small receiver on 127.0.0.1.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Redacted } from "effect"
import { vi } from "vitest"
import { DatabaseUrl } from "../../src/db/Database.js"
import * as Tracing from "../../src/tracing/Tracing.js"
import { runCli } from "../support/cli.js"
import { runOnce, stagesAfterClaim, tempDir, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"

// Each test starts worker processes; on a busy machine that alone takes many seconds.
vi.setConfig({ testTimeout: 180_000 })

const expectedChildren = ["stage claim", ...stagesAfterClaim.map((s) => `stage ${s}`)]

/** A span as both sources give it: ids, parent, name, start and attributes. */
interface Node {
  readonly traceId: string
  readonly spanId: string
  readonly parentId: string | undefined
  readonly name: string
  readonly start: bigint
  readonly attributes: Record<string, unknown>
}

const fromSdk = (span: ReadableSpan): Node => ({
  traceId: span.spanContext().traceId,
  spanId: span.spanContext().spanId,
  parentId: span.parentSpanContext?.spanId,
  name: span.name,
  start: BigInt(span.startTime[0]) * 1_000_000_000n + BigInt(span.startTime[1]),
  attributes: span.attributes
})

/** Each request span with the names of its children in the order they started. */
const requestTrees = (nodes: ReadonlyArray<Node>) =>
  nodes
    .filter((n) => n.name === "request")
    .map((root) => ({
      root,
      children: nodes
        .filter((n) => n.parentId === root.spanId)
        .sort((a, b) => (a.start < b.start ? -1 : 1))
        .map((n) => ({ name: n.name, traceId: n.traceId, attributes: n.attributes }))
    }))

layer(TestDatabase, { excludeTestServices: true, timeout: "120 seconds" })("traces", (it) => {
  it.effect("give each request a root span with one child per stage, in order", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const ids = yield* Effect.forEach(["@say one", "@error refused"], (prompt) =>
        sql<{ id: string }>`INSERT INTO orchestration_requests (prompt) VALUES (${prompt}) RETURNING id`.pipe(
          Effect.map((r) => r[0]!.id)
        )
      )
      const exporter = new InMemorySpanExporter()
      // Read before the SDK shuts down: shutting down empties the in-memory exporter.
      const nodes = yield* runOnce(writePipeline().file, {}, { traced: true }).pipe(
        Effect.map(() => exporter.getFinishedSpans().map(fromSdk)),
        Effect.provide(Tracing.layerWith(new SimpleSpanProcessor(exporter)))
      )
      const trees = requestTrees(nodes)
      expect(trees.map((t) => t.root.attributes["stageline.request_id"]).sort()).toEqual([...ids].sort())
      for (const { root, children } of trees) {
        expect(root.parentId).toBeUndefined()
        expect(root.attributes).toMatchObject({ "stageline.attempt": 1, "stageline.pipeline": "test-pipeline" })
        expect(children.map((c) => c.name)).toEqual(expectedChildren)
        for (const child of children) {
          expect(child.traceId).toBe(root.traceId)
          expect(child.attributes["stageline.outcome"]).toBe("ok")
        }
      }
      // Nothing else is a trace of its own: no polls, heartbeats or lease rescues.
      expect(nodes.filter((n) => n.parentId === undefined).map((n) => n.name)).toEqual(["request", "request"])
      // The stages' own spans hang below them: record's query under "stage record".
      const record = nodes.find((n) => n.name === "Queue.record")!
      expect(nodes.find((n) => n.spanId === record.parentId)?.name).toBe("stage record")
    })
  )

  it.effect("are exported over OTLP HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql<{ id: string }>`INSERT INTO orchestration_requests (prompt)
        VALUES (${"@say exported"}) RETURNING id`
      const bodies: Array<{ path: string; type: string | undefined; body: string }> = []
      const receiver = yield* Effect.acquireRelease(
        Effect.async<http.Server>((resume) => {
          const server = http.createServer((req, res) => {
            let body = ""
            req.on("data", (chunk) => {
              body += chunk
            })
            req.on("end", () => {
              bodies.push({ path: req.url ?? "", type: req.headers["content-type"], body })
              res.writeHead(200, { "content-type": "application/json" }).end("{}")
            })
          })
          server.listen(0, "127.0.0.1", () => {
            resume(Effect.succeed(server))
          })
        }),
        (server) =>
          Effect.async<void>((resume) => {
            server.close(() => resume(Effect.void))
          })
      )
      const { port } = receiver.address() as AddressInfo
      const url = Redacted.value(yield* DatabaseUrl)
      const worker = yield* Effect.promise(async () =>
        runCli(["run", "--once", "--pipeline", writePipeline().file], {
          DATABASE_URL: url,
          WORKSPACE_BASE: tempDir("ws"),
          OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
          OTEL_SERVICE_NAME: "stageline-test"
        })
      )
      expect(worker.code).toBe(0)
      expect(bodies.length).toBeGreaterThan(0)
      expect(bodies.every((b) => b.path === "/v1/traces" && b.type === "application/json")).toBe(true)
      interface OtlpSpan {
        traceId: string
        spanId: string
        parentSpanId?: string
        name: string
        startTimeUnixNano: string
        attributes: Array<{ key: string; value: { stringValue?: string; intValue?: number } }>
      }
      const payloads = bodies.map(
        (b) =>
          JSON.parse(b.body) as {
            resourceSpans: Array<{
              resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> }
              scopeSpans: Array<{ spans: Array<OtlpSpan> }>
            }>
          }
      )
      const services = payloads.flatMap((p) =>
        p.resourceSpans.map((r) => r.resource.attributes.find((a) => a.key === "service.name")?.value.stringValue)
      )
      expect(new Set(services)).toEqual(new Set(["stageline-test"]))
      const nodes = payloads
        .flatMap((p) => p.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)))
        .map(
          (s): Node => ({
            traceId: s.traceId,
            spanId: s.spanId,
            parentId: s.parentSpanId || undefined,
            name: s.name,
            start: BigInt(s.startTimeUnixNano),
            attributes: Object.fromEntries(s.attributes.map((a) => [a.key, a.value.stringValue ?? a.value.intValue]))
          })
        )
      const trees = requestTrees(nodes)
      expect(trees).toHaveLength(1)
      expect(trees[0]!.root.attributes["stageline.request_id"]).toBe(row!.id)
      expect(trees[0]!.children.map((c) => c.name)).toEqual(expectedChildren)
    }).pipe(Effect.scoped)
  )
})
