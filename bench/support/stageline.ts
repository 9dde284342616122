/**
 * stageline's worker in this process, started exactly as `stageline run --pipeline FILE` starts it: the
 * same CLI command, given the argv, with the environment it would read (`DATABASE_URL`, `WORKER_COUNT`, …)
 * as its config provider. Stopping it is what SIGINT does: the worker drains and returns.
 */
import { NodeContext } from "@effect/platform-node"
import { ConfigProvider, Effect, Fiber, Layer } from "effect"
import type pg from "pg"
import { embeddedModule } from "../../bin/engine.mjs"
import { until } from "./stats.js"

/**
 * A module of the engine `stageline run` runs (`"cli/Cli"`): compiled (dist/) when it is current, as
 * bin/stageline.mjs chooses, so the figures are those of the JavaScript a worker runs, not of the sources as
 * tsx compiles them on the fly.
 */
export const engineModule = async <M>(name: string) => (await import(embeddedModule(name))) as M

const { cli } = await engineModule<typeof import("../../src/cli/Cli.js")>("cli/Cli")
const Logging = await engineModule<typeof import("../../src/cli/Logging.js")>("cli/Logging")
const Tracing = await engineModule<typeof import("../../src/tracing/Tracing.js")>("tracing/Tracing")

export interface RunningStageline {
  readonly stop: () => Promise<void>
}

export const startStageline = async (options: {
  readonly url: string
  readonly database: string
  readonly pipeline: string
  readonly workerCount: number
  readonly env?: Record<string, string>
  /** A connection to the same server, used to see when the worker listens. */
  readonly observer: pg.Client
}): Promise<RunningStageline> => {
  const env = {
    ...process.env,
    DATABASE_URL: options.url,
    WORKER_COUNT: String(options.workerCount),
    // Each system runs with its logs at warnings: graphile-worker's logger is given the same.
    LOG_LEVEL: "warning",
    LOG_FORMAT: "json",
    ...options.env
  }
  const provider = ConfigProvider.fromMap(
    new Map(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined))
  )
  const fiber = Effect.runFork(
    cli(["node", "stageline", "run", "--pipeline", options.pipeline]).pipe(
      // As main.ts wires it: with no OTEL_EXPORTER_OTLP_ENDPOINT, tracing is off.
      Effect.provide(Layer.mergeAll(NodeContext.layer, Logging.layer, Tracing.layer)),
      Effect.withConfigProvider(provider)
    )
  )
  // Ready once its listener has said LISTEN and a fiber has looked for work (after the migrations).
  await until(
    "the stageline worker to listen",
    async () => {
      if (fiber.unsafePoll() !== null) throw new Error("the stageline worker exited before it was ready")
      const rows = await options.observer.query<{ n: number }>(
        `SELECT count(DISTINCT application_name)::int AS n FROM pg_stat_activity
          WHERE datname = $1 AND state = 'idle'
            AND ((application_name = 'stageline-listen' AND query LIKE 'LISTEN%')
              OR (application_name = 'stageline' AND query LIKE '%claim_next_request%'))`,
        [options.database]
      )
      return rows.rows[0]!.n === 2
    },
    20
  )
  return {
    stop: async () => {
      await Effect.runPromise(Fiber.interrupt(fiber))
    }
  }
}
