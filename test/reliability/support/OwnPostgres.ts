/**
 * A PostgreSQL server of the test's own, to stop and start while workers use it: the embedded server
 * (src/db/EmbeddedPostgres.ts) in a temporary directory on a free port. Never the machine's shared server.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Exit, Redacted, Scope } from "effect"
import * as Embedded from "../../../src/db/EmbeddedPostgres.js"
import { freePort } from "../../support/ports.js"

export interface OwnPostgres {
  /** The URL of its `stageline` database (stays valid across restarts). */
  readonly url: string
  readonly port: number
  /** A fast shutdown: every session is ended, new connections are refused until start. */
  readonly stop: () => Promise<void>
  readonly start: () => Promise<void>
  /** Stops it for good and removes its files. */
  readonly dispose: () => Promise<void>
}

export const startOwnPostgres = async (): Promise<OwnPostgres> => {
  const baseDir = fs.mkdtempSync(path.join(os.tmpdir(), "stageline-own-pg-"))
  const port = await freePort()
  let scope: Scope.CloseableScope | null = null
  let url = ""
  const start = async () => {
    if (scope) return
    const s = await Effect.runPromise(Scope.make())
    const server = await Effect.runPromise(
      Embedded.start({ baseDir, port, database: "stageline" }).pipe(Scope.extend(s))
    )
    url = Redacted.value(server.url)
    scope = s
  }
  const stop = async () => {
    const s = scope
    scope = null
    if (s) await Effect.runPromise(Scope.close(s, Exit.void))
  }
  await start()
  return {
    get url() {
      return url
    },
    port,
    stop,
    start,
    dispose: async () => {
      await stop()
      fs.rmSync(baseDir, { recursive: true, force: true })
    }
  }
}
