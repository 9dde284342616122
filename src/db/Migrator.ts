/**
 * Applies the plain-SQL migrations in `sql/` (`NNNNNN_name.sql`, applied in order, never edited once applied).
 *
 * Every run takes one transaction-scoped advisory lock before it looks at what is applied, so workers that
 * start at the same moment apply each migration exactly once: the second waits, then finds nothing to do.
 * Each migration runs in that same transaction, so a failing one leaves the schema as it was.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as SqlClient from "@effect/sql/SqlClient"
import { Data, Effect } from "effect"
import { inPackage } from "../fs/PackageRoot.js"

export class MigrationError extends Data.TaggedError("MigrationError")<{
  readonly reason: "unreadable" | "bad-name" | "failed"
  readonly migration?: string
  readonly message: string
  readonly cause?: unknown
}> {}

export interface Migration {
  readonly id: number
  readonly name: string
  readonly sql: string
}

/** The folder of the bundled migrations, next to `src/`. */
export const bundledMigrationsDir = inPackage("sql")

/** Chosen once; any 64-bit constant no other tool on the database uses. */
const migrationLockKey = 7_366_171_012_220_316n

const fileName = /^(\d{6})_([a-z0-9_]+)\.sql$/

export const loadMigrations = (dir: string = bundledMigrationsDir) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const entries = yield* fs
      .readDirectory(dir)
      .pipe(
        Effect.mapError(
          (cause) => new MigrationError({ reason: "unreadable", message: `cannot read migrations in ${dir}`, cause })
        )
      )
    const migrations: Array<Migration> = []
    for (const entry of entries.filter((e) => e.endsWith(".sql")).sort()) {
      const match = fileName.exec(entry)
      if (!match) {
        return yield* new MigrationError({
          reason: "bad-name",
          migration: entry,
          message: `migration file ${entry} must be named NNNNNN_name.sql`
        })
      }
      const sql = yield* fs
        .readFileString(path.join(dir, entry))
        .pipe(
          Effect.mapError(
            (cause) =>
              new MigrationError({ reason: "unreadable", migration: entry, message: `cannot read ${entry}`, cause })
          )
        )
      migrations.push({ id: Number(match[1]), name: match[2]!, sql })
    }
    return migrations
  })

/** Applies what is not applied yet and returns the migrations it applied. */
export const runMigrations = (migrations: ReadonlyArray<Migration>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const apply = Effect.gen(function* () {
      yield* sql`SELECT pg_advisory_xact_lock(${migrationLockKey.toString()}::bigint)`
      yield* sql`CREATE TABLE IF NOT EXISTS stageline_migrations (
        id integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`
      const rows = yield* sql<{ id: number }>`SELECT id FROM stageline_migrations`
      const applied = new Set(rows.map((row) => row.id))
      const pending = migrations.filter((m) => !applied.has(m.id))
      for (const migration of pending) {
        yield* sql.unsafe(migration.sql).pipe(
          Effect.mapError(
            (cause) =>
              new MigrationError({
                reason: "failed",
                migration: `${migration.id}_${migration.name}`,
                message: `migration ${migration.id}_${migration.name} failed: ${describe(cause)}`,
                cause
              })
          )
        )
        yield* sql`INSERT INTO stageline_migrations (id, name) VALUES (${migration.id}, ${migration.name})`
      }
      return pending
    })
    return yield* sql.withTransaction(apply)
  }).pipe(Effect.withSpan("Migrator.run"))

export const migrate = (dir?: string) =>
  loadMigrations(dir).pipe(
    Effect.flatMap(runMigrations),
    Effect.tap((applied) =>
      applied.length === 0
        ? Effect.logDebug("schema is up to date")
        : Effect.logInfo(`applied migrations: ${applied.map((m) => `${m.id}_${m.name}`).join(", ")}`)
    )
  )

const describe = (cause: unknown): string => {
  const inner = (cause as { cause?: unknown })?.cause ?? cause
  return inner instanceof Error ? inner.message : String(inner)
}
