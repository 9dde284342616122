/**
 * The worker's HTTP server, on `STAGELINE_HTTP_PORT` (none when it is 0 or unset): `/healthz` and
 * `/readyz` for probes, `/metrics` for Prometheus, and the dashboard (see DashboardRoutes.ts). It lives
 * as long as the layer, which the `run` command holds around its migrations and its supervisor, so
 * probes answer from the start to the last drained request.
 */
import * as http from "node:http"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Effect, Layer } from "effect"
import { WorkerConfig } from "../config/WorkerConfig.js"
import * as DashboardRoutes from "../dashboard/DashboardRoutes.js"
import { QueueHistory } from "../dashboard/QueueHistory.js"
import { loadMigrations } from "../db/Migrator.js"
import * as PrometheusText from "../metrics/PrometheusText.js"
import * as QueueGauges from "../metrics/QueueGauges.js"
import { liveness, readiness } from "./Health.js"

const json = (status: number, body: unknown) => HttpServerResponse.unsafeJson(body, { status })

export const router = Effect.map(loadMigrations(), (bundled) =>
  HttpRouter.empty.pipe(
    HttpRouter.get(
      "/healthz",
      Effect.map(liveness, (l) => json(l.alive ? 200 : 503, { status: l.alive ? "alive" : "stopped", ...l }))
    ),
    HttpRouter.get(
      "/readyz",
      Effect.map(readiness(bundled), (r) =>
        json(r.ready ? 200 : 503, { status: r.ready ? "ready" : "not ready", ...r })
      )
    ),
    HttpRouter.get(
      "/metrics",
      Effect.zipRight(
        QueueGauges.refresh,
        Effect.map(PrometheusText.scrape, (text) =>
          HttpServerResponse.text(text, { contentType: PrometheusText.contentType })
        )
      )
    )
  )
)

/** The server, when a port is configured; nothing otherwise. */
export const layer = Layer.unwrapEffect(
  Effect.gen(function* () {
    const { httpPort, httpHost } = yield* WorkerConfig
    if (httpPort === 0) return Layer.empty
    const app = HttpRouter.concat(yield* router, yield* DashboardRoutes.routes)
    return HttpServer.serve(app).pipe(
      HttpServer.withLogAddress,
      // Probes and scrapes every few seconds would bury the requests' traces.
      HttpMiddleware.withTracerDisabledWhen(() => true),
      Layer.provide(NodeHttpServer.layer(() => http.createServer(), { port: httpPort, host: httpHost })),
      Layer.provide(QueueHistory.layer)
    )
  })
)
