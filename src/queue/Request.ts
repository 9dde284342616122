/**
 * A row of `orchestration_requests` as a worker holds it once claimed, and the states a request moves
 * through.
 *
 * States and who owns them:
 * - `pending`: inserted by anyone (plain SQL, `stageline enqueue`); any worker may claim it once `run_after`
 *   has passed.
 * - `processing`: owned by the worker named in `claimed_by`; only that worker records its outcome.
 * - `completed` / `failed`: final, written by `record` together with the result row.
 * - `cancelled`: set by an operator; a pending request in this state is never claimed.
 *
 * Delivery is at least once: a request whose worker died is claimed again (an operator's
 * `release_stale_requests`), so a stage must tolerate meeting a request a second time.
 */
import { Schema } from "effect"

export const RequestStatus = Schema.Literal("pending", "processing", "completed", "failed", "cancelled")
export type RequestStatus = typeof RequestStatus.Type

/**
 * A plain struct, not a Schema.Class: every claim decodes its rows, and building a class instance cost
 * three times what checking the fields did.
 */
export const ClaimedRequest = Schema.Struct({
  id: Schema.String,
  created_at: Schema.DateFromSelf,
  status: RequestStatus,
  repo_url: Schema.NullOr(Schema.String),
  branch: Schema.NullOr(Schema.String),
  prompt: Schema.String,
  /** As stored: decoded by the stages that use it (see RequestConfig), so a bad one fails its request. */
  config: Schema.Unknown,
  metadata: Schema.Unknown,
  /** When it may run: not before this. Absent where a claim stage's row lacks it. */
  run_after: Schema.optional(Schema.DateFromSelf),
  claimed_at: Schema.NullOr(Schema.DateFromSelf),
  claimed_by: Schema.NullOr(Schema.String),
  attempts: Schema.Number,
  /** Null: the pipeline's `queue.max_attempts`. */
  max_attempts: Schema.NullOr(Schema.Number),
  priority: Schema.Number
})
export type ClaimedRequest = typeof ClaimedRequest.Type
