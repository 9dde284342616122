/**
 * The embedded server that `stageline run` uses when DATABASE_URL is not set.
 */
import { spawn } from "node:child_process"
import * as net from "node:net"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Redacted, Scope } from "effect"
import pg from "pg"
import * as Embedded from "../../src/db/EmbeddedPostgres.js"
import { waitFor } from "../support/cli.js"
import { tempDir } from "../support/harness.js"
import { freePort } from "../support/ports.js"

const query = async (url: string, text: string) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query(text)).rows
  } finally {
    await client.end()
  }
}

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.once("connect", () => resolve(socket.end() && true))
    socket.once("error", () => resolve(false))
  })

/** Another process that starts the server in `baseDir` and holds it until killed. */
const hold = (baseDir: string, port: number) =>
  Effect.gen(function* () {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", path.join(import.meta.dirname, "..", "fixtures", "hold-embedded.ts"), baseDir, String(port)],
      { stdio: ["ignore", "pipe", "inherit"] }
    )
    let out = ""
    child.stdout!.on("data", (d) => {
      out += d
    })
    yield* Effect.promise(() =>
      waitFor("the other process to start the server", async () => out.includes("ready"), 60_000)
    )
    return child
  })

describe("the embedded PostgreSQL", () => {
  it.live(
    "starts, keeps its data across runs, stops with its scope, and replaces a server a killed run left",
    () =>
      Effect.gen(function* () {
        const baseDir = tempDir("embedded")
        const port = yield* Effect.promise(freePort)
        const options = { baseDir, port, database: "stageline" }

        // First run: initialises the cluster and writes a row.
        const first = yield* Effect.scoped(
          Effect.gen(function* () {
            const server = yield* Embedded.start(options)
            expect(server.owned).toBe(true)
            const url = Redacted.value(server.url)
            yield* Effect.promise(() =>
              query(url, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
            )
            return url
          })
        )
        // The scope closed: the server is stopped.
        expect(yield* Effect.promise(() => accepts(port))).toBe(false)

        // A run that is SIGKILLed leaves its server running.
        const holder = yield* hold(baseDir, port)
        holder.kill("SIGKILL")
        yield* Effect.promise(() => new Promise((r) => holder.once("exit", r)))
        expect(yield* Effect.promise(() => accepts(port))).toBe(true)

        // The next run finds the orphan, stops it, starts its own, and the data is still there.
        const scope = yield* Scope.make()
        const second = yield* Embedded.start(options).pipe(Scope.extend(scope))
        expect(second.owned).toBe(true)
        expect(Redacted.value(second.url)).toBe(first)
        const rows = yield* Effect.promise(() => query(Redacted.value(second.url), "SELECT v FROM kept"))
        expect(rows).toEqual([{ v: "still here" }])

        yield* Scope.close(scope, Exit.void)
        expect(yield* Effect.promise(() => accepts(port))).toBe(false)

        // While its owner lives, another process uses the server as it is and leaves it running.
        const owner = yield* hold(baseDir, port)
        const joined = yield* Effect.scoped(
          Effect.gen(function* () {
            const server = yield* Embedded.start(options)
            const rows = yield* Effect.promise(() => query(Redacted.value(server.url), "SELECT v FROM kept"))
            expect(rows).toEqual([{ v: "still here" }])
            return server.owned
          })
        )
        expect(joined).toBe(false)
        expect(yield* Effect.promise(() => accepts(port))).toBe(true)
        owner.kill("SIGKILL")
        yield* Effect.promise(() => new Promise((r) => owner.once("exit", r)))
        // Clean up the server the killed owner left.
        yield* Effect.scoped(Embedded.start(options))
        expect(yield* Effect.promise(() => accepts(port))).toBe(false)

        // The process that started the server leaves first: the one still using it keeps it.
        const starter = yield* Scope.make()
        expect((yield* Embedded.start(options).pipe(Scope.extend(starter))).owned).toBe(true)
        const latecomer = yield* hold(baseDir, port)
        yield* Scope.close(starter, Exit.void)
        expect(yield* Effect.promise(() => accepts(port))).toBe(true)
        latecomer.kill("SIGKILL")
        yield* Effect.promise(() => new Promise((r) => latecomer.once("exit", r)))
        yield* Effect.scoped(Embedded.start(options))
        expect(yield* Effect.promise(() => accepts(port))).toBe(false)
      }),
    120_000
  )
})
