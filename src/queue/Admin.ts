/**
 * What operators do to the queue by hand: look at what runs, read results, retry, cancel, release.
 * The same SQL a person could type, with the guards that make it safe to run while workers are busy.
 */
import { SqlClient } from "@effect/sql"
import { Data, Effect } from "effect"

export class AdminError extends Data.TaggedError("AdminError")<{ readonly message: string }> {}

export interface InFlight {
  readonly id: string
  readonly claimed_by: string | null
  readonly current_stage: string | null
  readonly attempts: number
  readonly running_s: number | null
  readonly lease_left_s: number | null
}

export interface ResultLine {
  readonly request_id: string
  readonly attempt: number
  readonly status: string
  readonly duration_ms: number | null
  readonly cost_usd: string | null
  readonly created_at: Date
  readonly error: string | null
}

export const inFlight = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql<InFlight>`SELECT id, claimed_by, current_stage, attempts,
      extract(epoch FROM now() - claimed_at)::float8 AS running_s,
      extract(epoch FROM lease_expires_at - now())::float8 AS lease_left_s
    FROM orchestration_requests WHERE status = 'processing' ORDER BY claimed_at`
)

export interface QueueDepth {
  /** Pending and claimable now. */
  readonly ready: number
  /** Pending, waiting for its run_after (a retry's backoff, a scheduled request). */
  readonly scheduled: number
  /** Being processed by any worker. */
  readonly processing: number
}

/** Counts over the partial indexes on pending and processing rows: cheap enough for every scrape. */
export const queueDepth = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql<QueueDepth>`SELECT
      (SELECT count(*) FROM orchestration_requests WHERE status = 'pending' AND run_after <= now())::int AS ready,
      (SELECT count(*) FROM orchestration_requests WHERE status = 'pending' AND run_after > now())::int AS scheduled,
      (SELECT count(*) FROM orchestration_requests WHERE status = 'processing')::int AS processing`.pipe(
    Effect.map((rows) => rows[0]!)
  )
)

export const results = (options: { readonly requestId?: string | undefined; readonly limit: number }) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    options.requestId === undefined
      ? sql<ResultLine>`SELECT request_id, attempt, status, duration_ms, cost_usd::text AS cost_usd, created_at, error
          FROM orchestration_results ORDER BY created_at DESC LIMIT ${options.limit}`
      : sql<ResultLine>`SELECT request_id, attempt, status, duration_ms, cost_usd::text AS cost_usd, created_at, error
          FROM orchestration_results WHERE request_id = ${options.requestId} ORDER BY attempt`
  )

const statusOf = (id: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ status: string }>`SELECT status FROM orchestration_requests WHERE id::text = ${id}`.pipe(
      Effect.map((rows) => rows[0]?.status ?? null)
    )
  )

/** A finished request back to pending for one more attempt. */
export const retry = (id: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ attempts: number }>`UPDATE orchestration_requests
         SET status = 'pending', run_after = now(), claimed_by = NULL, claimed_at = NULL, finished_at = NULL,
             lease_expires_at = NULL, max_attempts = attempts + 1
       WHERE id::text = ${id} AND status IN ('failed', 'cancelled', 'completed')
   RETURNING attempts`
    if (rows[0]) {
      yield* sql`SELECT pg_notify('stageline_requests', 'retried')`
      return `request ${id} is pending again (attempt ${rows[0].attempts + 1} next)`
    }
    const status = yield* statusOf(id)
    return yield* new AdminError({
      message:
        status === null
          ? `no request ${id}`
          : `request ${id} is ${status}; only failed, cancelled or completed requests can be retried`
    })
  })

/** Stops a request: a pending one is never claimed, a running one is stopped by its worker. */
export const cancel = (id: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ was: string }>`UPDATE orchestration_requests AS r
         SET status = 'cancelled', finished_at = CASE WHEN r.status = 'pending' THEN now() ELSE r.finished_at END
        FROM (SELECT id, status AS was FROM orchestration_requests WHERE id::text = ${id} FOR UPDATE) AS old
       WHERE r.id = old.id AND old.was IN ('pending', 'processing')
   RETURNING old.was`
    if (rows[0]) {
      return rows[0].was === "pending"
        ? `request ${id} cancelled before it started`
        : `request ${id} cancelled; its worker is stopping it`
    }
    const status = yield* statusOf(id)
    return yield* new AdminError({
      message: status === null ? `no request ${id}` : `request ${id} is already ${status}`
    })
  })

export const releaseStale = (olderThanMs: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{
      released: number
    }>`SELECT release_stale_requests(${olderThanMs} * interval '1 millisecond') AS released`.pipe(
      Effect.map((rows) => rows[0]?.released ?? 0)
    )
  )
