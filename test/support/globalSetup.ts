/**
 * One PostgreSQL server for the whole run: the one `DATABASE_URL` names, or else an embedded one started
 * here in a temporary directory on a free port. Each test file then makes a database of its own on it.
 *
 * The tests that run the `stageline` command run it as it is deployed, compiled: if dist/ is missing or older
 * than a source, it is built first (bin/engine.mjs would run the sources).
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Exit, Redacted, Scope } from "effect"
import type { TestProject } from "vitest/node"
import { compiledIsCurrent } from "../../bin/engine.mjs"
import * as Embedded from "../../src/db/EmbeddedPostgres.js"
import { freePort } from "./ports.js"

declare module "vitest" {
  export interface ProvidedContext {
    adminDatabaseUrl: string
  }
}

export default async function setup(project: TestProject) {
  if (!compiledIsCurrent()) {
    execFileSync(process.execPath, [path.join(import.meta.dirname, "..", "..", "scripts", "build.mjs")], {
      stdio: "inherit"
    })
  }
  const configured = process.env.DATABASE_URL
  if (configured) {
    project.provide("adminDatabaseUrl", configured)
    return
  }
  const baseDir = fs.mkdtempSync(path.join(os.tmpdir(), "stageline-test-pg-"))
  const scope = await Effect.runPromise(Scope.make())
  const server = await Effect.runPromise(
    Embedded.start({ baseDir, port: await freePort(), database: "stageline" }).pipe(Scope.extend(scope))
  )
  project.provide("adminDatabaseUrl", Redacted.value(server.url))
  return async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    fs.rmSync(baseDir, { recursive: true, force: true })
  }
}
