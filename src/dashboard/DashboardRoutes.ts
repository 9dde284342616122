/**
 * The dashboard: two pages of plain HTML and a little vanilla JavaScript (no build step), and the JSON they
 * poll. Everything comes from the database, so any worker's dashboard shows the whole queue.
 *
 *   /                          queue depth over time, requests in flight and their stage, recent results
 *   /requests/:id              one request: its attempts' results and its events, live
 *   /api/queue                 { depth, history, worker }
 *   /api/requests              { inFlight, recent }
 *   /api/requests/:id          { request, results }
 *   /api/requests/:id/events   { status, events } after ?after=<event id>
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect } from "effect"
import { WorkerConfig } from "../config/WorkerConfig.js"
import { inPackage } from "../fs/PackageRoot.js"
import * as Admin from "../queue/Admin.js"
import { QueueHistory } from "./QueueHistory.js"

// Not compiled: the compiled engine reads them from the sources too.
const staticDir = `${inPackage("src", "dashboard", "static")}/`

const assets = {
  "index.html": "text/html; charset=utf-8",
  "request.html": "text/html; charset=utf-8",
  "dashboard.js": "text/javascript; charset=utf-8",
  "dashboard.css": "text/css; charset=utf-8"
} as const

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

const json = (body: unknown, status = 200) =>
  HttpServerResponse.unsafeJson(body, { status, headers: { "cache-control": "no-store" } })

const notFound = (id: string) => json({ error: `no request ${id}` }, 404)

/** Answers for the request the route's `:id` names, or 404 when there is no such request. */
const forRequest = <E, R>(
  answer: (request: Admin.RequestRow) => Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
) =>
  Effect.gen(function* () {
    const { id } = yield* HttpRouter.params
    const request = id !== undefined && uuid.test(id) ? yield* Admin.request(id) : null
    return request === null ? notFound(String(id)) : yield* answer(request)
  })

export const routes = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  // Read once: the pages are part of the installed version, like the migrations.
  const files = yield* Effect.forEach(Object.entries(assets), ([name, type]) =>
    Effect.map(fs.readFileString(`${staticDir}${name}`), (text) => [name, type, text] as const)
  )
  const page = (name: keyof typeof assets) => {
    const [, type, text] = files.find(([n]) => n === name)!
    return HttpServerResponse.text(text, { contentType: type, headers: { "cache-control": "no-cache" } })
  }
  return HttpRouter.empty.pipe(
    HttpRouter.get("/", Effect.succeed(page("index.html"))),
    HttpRouter.get("/requests/:id", Effect.succeed(page("request.html"))),
    HttpRouter.get("/dashboard.js", Effect.succeed(page("dashboard.js"))),
    HttpRouter.get("/dashboard.css", Effect.succeed(page("dashboard.css"))),
    HttpRouter.get(
      "/api/queue",
      Effect.gen(function* () {
        const history = yield* Effect.flatMap(QueueHistory, (h) => h.samples)
        const depth = yield* Admin.queueDepth
        const { workerName } = yield* WorkerConfig
        return json({ worker: workerName, depth, history })
      })
    ),
    HttpRouter.get(
      "/api/requests",
      Effect.map(
        Effect.all({ inFlight: Admin.inFlightStages, recent: Admin.results({ limit: 25 }) }, { concurrency: 2 }),
        (body) => json(body)
      )
    ),
    HttpRouter.get(
      "/api/requests/:id",
      forRequest((request) =>
        Effect.map(Admin.results({ requestId: request.id, limit: 100 }), (results) => json({ request, results }))
      )
    ),
    HttpRouter.get(
      "/api/requests/:id/events",
      forRequest((request) =>
        Effect.gen(function* () {
          const url = new URL((yield* HttpServerRequest.HttpServerRequest).url, "http://localhost")
          const after = url.searchParams.get("after") ?? "0"
          const events = yield* Admin.events(request.id, /^\d+$/.test(after) ? after : "0", 500)
          return json({ status: request.status, events })
        })
      )
    )
  )
})
