/**
 * What the container smoke test stands in for outside the project, served to the worker's container:
 * the Messages API (the scripted model the demo uses, on SMOKE_MODEL_PORT) and the repository to review
 * (the demo's sample repository, over git:// by `git daemon` on SMOKE_GIT_PORT). Runs until SIGTERM.
 *
 *   node --import tsx scripts/smoke-fixtures.ts
 */
import { spawn } from "node:child_process"
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { demoScript } from "../src/demo/demoScript.js"
import { sampleRepo } from "../src/demo/SampleRepo.js"
import * as ScriptedModel from "../src/model/ScriptedModel.js"

const modelPort = Number(process.env.SMOKE_MODEL_PORT ?? 8787)
const gitPort = Number(process.env.SMOKE_GIT_PORT ?? 9418)

const gitDaemon = (root: string) =>
  Effect.acquireRelease(
    Effect.sync(() =>
      spawn(
        "git",
        ["daemon", "--export-all", "--reuseaddr", `--base-path=${root}`, "--listen=0.0.0.0", `--port=${gitPort}`, root],
        { stdio: "inherit" }
      )
    ),
    (daemon) => Effect.sync(() => daemon.kill("SIGTERM"))
  )

Effect.gen(function* () {
  const repo = yield* sampleRepo
  yield* gitDaemon(repo.root)
  const model = yield* ScriptedModel.start(demoScript, { host: "0.0.0.0", port: modelPort })
  yield* Effect.logInfo(
    `serving the scripted model on ${model.url} and the repository on git://<this host>:${gitPort}/widgets.git`
  )
  return yield* Effect.never
}).pipe(Effect.scoped, NodeRuntime.runMain)
