-- Claims and records for many worker fibers in one statement each, one round trip and one commit for the
-- lot: the worker gathers the fibers that claim, or record, at the same moment (src/db/Batcher.ts).
--
-- Claims: the i-th request taken goes to the i-th fiber named; a fiber left over got nothing (the queue had
-- no more). Same order, same SKIP LOCKED and same lease as claim_next_request, which stays for the seed's
-- users; the lock is FOR NO KEY UPDATE, which events' foreign-key checks do not conflict with.
CREATE FUNCTION claim_next_requests(worker_ids text[], lease interval)
RETURNS SETOF orchestration_requests
LANGUAGE plpgsql
AS $$
BEGIN
  RETURN QUERY
  WITH picked AS (
    SELECT p.id, (row_number() OVER ())::integer AS slot
      FROM (SELECT q.id
              FROM orchestration_requests AS q
             WHERE q.status = 'pending' AND q.run_after <= now()
             ORDER BY q.priority DESC, q.run_after, q.created_at
             LIMIT cardinality(claim_next_requests.worker_ids)
               FOR NO KEY UPDATE SKIP LOCKED) AS p
  )
  UPDATE orchestration_requests AS r
     SET status = 'processing',
         claimed_at = now(),
         claimed_by = claim_next_requests.worker_ids[picked.slot],
         attempts = r.attempts + 1,
         lease_expires_at = now() + claim_next_requests.lease,
         heartbeat_at = now(),
         current_stage = NULL
    FROM picked
   WHERE r.id = picked.id
  RETURNING r.*;
END;
$$;

-- Records attempts, one jsonb array element each, in one statement: for each it decides the request's next
-- status and writes it (a cancelled request stays cancelled; a failed attempt that may be retried and has
-- attempts left goes back to pending, unclaimed, after its backoff, doubled for each attempt after the
-- first; any other is finished now), and writes the attempt's result row, but only while the request is
-- still that worker's. When it is not, `existing` tells a repeated record (its row is there) from a lost
-- claim. Rows are locked in id order, so two such statements never wait on each other in a circle, and
-- FOR NO KEY UPDATE (the key never changes), so the key-share locks that inserting events takes on their
-- requests (the foreign key) never block it, nor it them: with several rows locked at once, those two
-- waited on each other in a circle.
--
-- In PL/pgSQL, so that its plan is kept for the connection: planning this statement cost more than
-- running it. The ids are looked up by the primary key (`= ANY`): joined only with the input, the planner
-- could not know how few rows it holds, and scanned the table.
CREATE FUNCTION record_attempts(attempts jsonb)
RETURNS TABLE (status text, existing boolean)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
  ids uuid[] := ARRAY(SELECT (e->>'request_id')::uuid FROM jsonb_array_elements(record_attempts.attempts) AS e);
BEGIN
  RETURN QUERY
  WITH input AS (
    SELECT i.*
      FROM ROWS FROM (jsonb_to_recordset(record_attempts.attempts) AS (
             request_id uuid, attempt integer, worker_id text, status text, final text, may_retry boolean,
             max_attempts integer, backoff_ms double precision, output jsonb, pr_url text, commit_sha text,
             branch_name text, duration_ms integer, error text, session_id text, model text, num_turns integer,
             cost_usd numeric, usage jsonb))
           WITH ORDINALITY AS i
  ), next AS (
    SELECT q.id,
           CASE WHEN q.status = 'cancelled' THEN 'cancelled'
                WHEN i.may_retry AND q.attempts < coalesce(q.max_attempts, i.max_attempts) THEN 'pending'
                ELSE i.final END AS next_status,
           i.backoff_ms,
           i.error
      FROM orchestration_requests AS q
      JOIN input AS i ON q.id = i.request_id
     WHERE q.id = ANY (ids)
       AND q.claimed_by = i.worker_id AND q.status IN ('processing', 'cancelled')
     ORDER BY q.id
       FOR NO KEY UPDATE OF q
  ), updated AS (
    UPDATE orchestration_requests AS q
       SET status = n.next_status,
           run_after = CASE WHEN n.next_status = 'pending'
                            THEN now() + n.backoff_ms * interval '1 millisecond' * power(2, greatest(q.attempts - 1, 0))
                            ELSE q.run_after END,
           claimed_by = CASE WHEN n.next_status = 'pending' THEN NULL ELSE q.claimed_by END,
           claimed_at = CASE WHEN n.next_status = 'pending' THEN NULL ELSE q.claimed_at END,
           finished_at = CASE WHEN n.next_status = 'pending' THEN NULL ELSE now() END,
           last_error = n.error,
           lease_expires_at = NULL,
           current_stage = NULL
      FROM next AS n
     WHERE q.id = n.id
 RETURNING q.id, q.status
  ), inserted AS (
    INSERT INTO orchestration_results
           (request_id, attempt, worker_id, status, output, pr_url, commit_sha, branch_name, duration_ms,
            error, session_id, model, num_turns, cost_usd, usage)
    SELECT i.request_id, i.attempt, i.worker_id, i.status, i.output, i.pr_url, i.commit_sha, i.branch_name,
           i.duration_ms, i.error, i.session_id, i.model, i.num_turns, i.cost_usd, i.usage
      FROM input AS i
      JOIN updated AS u ON u.id = i.request_id
     ORDER BY i.ordinality
    ON CONFLICT (request_id, attempt) DO NOTHING
  )
  SELECT u.status,
         EXISTS (SELECT 1 FROM orchestration_results AS r
                  WHERE r.request_id = ANY (ids)
                    AND r.request_id = i.request_id AND r.attempt = i.attempt AND r.worker_id = i.worker_id)
    FROM input AS i
    LEFT JOIN updated AS u ON u.id = i.request_id
   ORDER BY i.ordinality;
END;
$$;

-- Writes a batch of progress events (a jsonb array) in their order, without waiting for the disk: events
-- are progress, written best-effort (a batch that cannot be written is logged and dropped), and a commit
-- that waits for its flush would queue the claims' and records' flushes behind it. A database crash can
-- lose the last fraction of a second of events; never a claim, a result or a status.
CREATE FUNCTION insert_events(events jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  INSERT INTO orchestration_events (request_id, attempt, at, kind, stage, message, data)
  SELECT e.request_id, e.attempt, e.at, e.kind, e.stage, e.message, e.data
    FROM ROWS FROM (jsonb_to_recordset(insert_events.events)
           AS (request_id uuid, attempt integer, at timestamptz, kind text, stage text, message text, data jsonb))
         WITH ORDINALITY AS e
   ORDER BY e.ordinality;
END;
$$;
