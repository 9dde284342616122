/**
 * What the probes ask. Liveness: the process answers and its supervisor has not stopped (a wedged or
 * finished supervisor should be restarted). Readiness: the database answers, every bundled migration is
 * applied, and the worker is not draining; otherwise the reasons, so an operator reading the probe's
 * body sees which one failed.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Duration, Effect, Ref } from "effect"
import type { Migration } from "../db/Migrator.js"
import { Lifecycle, type SupervisorState } from "../worker/Lifecycle.js"

export interface Liveness {
  readonly alive: boolean
  readonly supervisor: SupervisorState
}

export interface Readiness {
  readonly ready: boolean
  /** Why not, one sentence each; empty when ready. */
  readonly reasons: ReadonlyArray<string>
}

/** A database that does not answer within this is as good as down for a probe. */
const databaseTimeout = Duration.seconds(2)

export const liveness = Effect.gen(function* () {
  const lifecycle = yield* Lifecycle
  const supervisor = yield* Ref.get(lifecycle.supervisor)
  return { alive: supervisor !== "stopped", supervisor } satisfies Liveness
})

const messageOf = (error: unknown): string => {
  const inner = (error as { cause?: unknown })?.cause ?? error
  return inner instanceof Error ? inner.message : String((inner as { message?: unknown })?.message ?? inner)
}

/** The bundled migrations not recorded in `stageline_migrations`, or why that could not be read. */
const unappliedMigrations = (bundled: ReadonlyArray<Migration>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [table] = yield* sql<{ exists: boolean }>`SELECT to_regclass('stageline_migrations') IS NOT NULL AS exists`
    if (!table?.exists) return bundled
    const rows = yield* sql<{ id: number }>`SELECT id FROM stageline_migrations`
    const applied = new Set(rows.map((r) => r.id))
    return bundled.filter((m) => !applied.has(m.id))
  })

export const readiness = (bundled: ReadonlyArray<Migration>) =>
  Effect.gen(function* () {
    const reasons: Array<string> = []
    const migrations = yield* unappliedMigrations(bundled).pipe(
      Effect.timeoutFail({ duration: databaseTimeout, onTimeout: () => new Error("no answer within 2 s") }),
      Effect.either
    )
    if (migrations._tag === "Left") {
      reasons.push(`the database does not answer: ${messageOf(migrations.left)}`)
    } else if (migrations.right.length > 0) {
      reasons.push(`migrations not applied: ${migrations.right.map((m) => `${m.id}_${m.name}`).join(", ")}`)
    }
    if (yield* Lifecycle.isDraining) reasons.push("the worker is draining (shutting down)")
    return { ready: reasons.length === 0, reasons } satisfies Readiness
  })
