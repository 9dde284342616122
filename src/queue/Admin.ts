/**
 * What operators do to the queue by hand: look at what runs, read results, retry, cancel, release.
 * The same SQL a person could type, with the guards that make it safe to run while workers are busy.
 */
import * as SqlClient from "@effect/sql/SqlClient"
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

export interface EventRow {
  readonly id: string
  readonly at: Date
  readonly attempt: number
  readonly kind: string
  readonly stage: string | null
  readonly message: string | null
  readonly data: { outcome?: string; duration_ms?: number } | null
}

/**
 * A request's progress events after the one with id `after` (a bigint as text), oldest first; all of them
 * unless `limit`. Ordered by the table's bigint id, not the text one returned (which sorts "10" before "9").
 */
export const events = (requestId: string, after: string, limit: number | null = null) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<EventRow>`SELECT id::text AS id, at, attempt, kind, stage, message, data
      FROM orchestration_events AS e WHERE request_id::text = ${requestId} AND e.id > ${after}::bigint
      ORDER BY e.id LIMIT ${limit}`
  )

export interface AnyEventRow extends EventRow {
  readonly request_id: string
}

/** Every request's events after `after`, oldest first, a page at a time (for following the whole queue). */
export const eventsOfAll = (after: string, limit = 1000) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<AnyEventRow>`SELECT e.id::text AS id, e.request_id::text AS request_id, e.at, e.attempt, e.kind,
        e.stage, e.message, e.data
      FROM orchestration_events AS e WHERE e.id > ${after}::bigint ORDER BY e.id LIMIT ${limit}`
  )

/**
 * Where following the whole queue starts: just before the first event of the attempts running now, or at
 * the latest event when nothing runs.
 */
export const followStart = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql<{ start: string }>`SELECT coalesce(
      (SELECT min(e.id) - 1 FROM orchestration_events AS e
         JOIN orchestration_requests AS r ON r.id = e.request_id AND e.attempt = r.attempts
        WHERE r.status = 'processing'),
      (SELECT max(id) FROM orchestration_events),
      0)::text AS start`.pipe(Effect.map((rows) => rows[0]?.start ?? "0"))
)

/** The status of each of these requests. */
export const statuses = (ids: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    ids.length === 0
      ? Effect.succeed(new Map<string, string>())
      : sql<{ id: string; status: string }>`SELECT id::text AS id, status FROM orchestration_requests
          WHERE id::text IN ${sql.in(ids)}`.pipe(Effect.map((rows) => new Map(rows.map((r) => [r.id, r.status]))))
  )

export interface RequestRow {
  readonly id: string
  readonly status: string
  readonly prompt: string
  readonly repo_url: string | null
  readonly branch: string | null
  readonly attempts: number
  readonly max_attempts: number | null
  readonly created_at: Date
  readonly claimed_at: Date | null
  readonly claimed_by: string | null
  readonly finished_at: Date | null
  readonly last_error: string | null
}

export const request = (id: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<RequestRow>`SELECT id, status, prompt, repo_url, branch, attempts, max_attempts, created_at, claimed_at,
        claimed_by, finished_at, last_error
      FROM orchestration_requests WHERE id::text = ${id}`.pipe(Effect.map((rows) => rows[0] ?? null))
  )

export interface InFlightStage {
  readonly id: string
  readonly claimed_by: string | null
  readonly attempts: number
  readonly running_s: number | null
  /** The stage it is in now, from its latest progress event (fresher than the heartbeat's current_stage). */
  readonly stage: string | null
  readonly stage_since: Date | null
}

export const inFlightStages = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql<InFlightStage>`SELECT r.id, r.claimed_by, r.attempts,
      extract(epoch FROM now() - r.claimed_at)::float8 AS running_s,
      coalesce(e.stage, r.current_stage) AS stage, e.at AS stage_since
    FROM orchestration_requests AS r
    LEFT JOIN LATERAL (
      SELECT stage, at FROM orchestration_events
       WHERE request_id = r.id AND attempt = r.attempts AND kind IN ('claimed', 'stage-started')
       ORDER BY id DESC LIMIT 1
    ) AS e ON true
    WHERE r.status = 'processing' ORDER BY r.claimed_at`
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
