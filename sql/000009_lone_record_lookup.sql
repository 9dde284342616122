-- A lone record no longer looks for a result row when it records the attempt. 000008 mended the group's
-- branch; the lone branch (000007) still looked for the attempt's row on every call, and whenever the
-- result table's statistics say it is small (analyzed while it was nearly empty) its plan reads the whole
-- table: one request at a time, each record then took longer than the last, 0.73 ms with no result rows
-- and 1.44 ms with 18,000. Now, as in the group's branch, the row is looked for only for an attempt that
-- was not recorded, the one case where `existing` says anything.
-- Everything else is record_attempts as 000008 left it: keep the two branches alike
-- (test/integration/grouped-queue.test.ts records the same attempts both ways and compares).
CREATE OR REPLACE FUNCTION record_attempts(attempts jsonb)
RETURNS TABLE (status text, existing boolean)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
  ids uuid[];
  a jsonb;
  a_request_id uuid;
  a_attempt integer;
  a_worker_id text;
BEGIN
  IF jsonb_array_length(record_attempts.attempts) = 1 THEN
    a := record_attempts.attempts -> 0;
    a_request_id := (a ->> 'request_id')::uuid;
    a_attempt := (a ->> 'attempt')::integer;
    a_worker_id := a ->> 'worker_id';
    RETURN QUERY
    WITH next AS (
      SELECT q.id,
             CASE WHEN q.status = 'cancelled' THEN 'cancelled'
                  WHEN (a ->> 'may_retry')::boolean
                       AND q.attempts < coalesce(q.max_attempts, (a ->> 'max_attempts')::integer) THEN 'pending'
                  ELSE a ->> 'final' END AS next_status
        FROM orchestration_requests AS q
       WHERE q.id = a_request_id AND q.claimed_by = a_worker_id AND q.status IN ('processing', 'cancelled')
         FOR NO KEY UPDATE OF q
    ), updated AS (
      UPDATE orchestration_requests AS q
         SET status = n.next_status,
             run_after = CASE WHEN n.next_status = 'pending'
                              THEN now() + (a ->> 'backoff_ms')::double precision * interval '1 millisecond'
                                           * power(2, greatest(q.attempts - 1, 0))
                              ELSE q.run_after END,
             claimed_by = CASE WHEN n.next_status = 'pending' THEN NULL ELSE q.claimed_by END,
             claimed_at = CASE WHEN n.next_status = 'pending' THEN NULL ELSE q.claimed_at END,
             finished_at = CASE WHEN n.next_status = 'pending' THEN NULL ELSE now() END,
             last_error = a ->> 'error',
             lease_expires_at = NULL,
             current_stage = NULL
        FROM next AS n
       WHERE q.id = n.id
   RETURNING q.id, q.status
    ), inserted AS (
      INSERT INTO orchestration_results
             (request_id, attempt, worker_id, status, output, pr_url, commit_sha, branch_name, duration_ms,
              error, session_id, model, num_turns, cost_usd, usage)
      SELECT a_request_id, a_attempt, a_worker_id, a ->> 'status', nullif(a -> 'output', 'null'), a ->> 'pr_url',
             a ->> 'commit_sha', a ->> 'branch_name', (a ->> 'duration_ms')::integer, a ->> 'error',
             a ->> 'session_id', a ->> 'model', (a ->> 'num_turns')::integer, (a ->> 'cost_usd')::numeric,
             nullif(a -> 'usage', 'null')
        FROM updated
      ON CONFLICT (request_id, attempt) DO NOTHING
    )
    SELECT u.status,
           CASE WHEN u.status IS NULL
                THEN EXISTS (SELECT 1 FROM orchestration_results AS r
                              WHERE r.request_id = a_request_id AND r.attempt = a_attempt
                                AND r.worker_id = a_worker_id)
                ELSE false END
      FROM (SELECT 1) AS one
      LEFT JOIN updated AS u ON true;
    RETURN;
  END IF;

  ids := ARRAY(SELECT (e->>'request_id')::uuid FROM jsonb_array_elements(record_attempts.attempts) AS e);
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
  SELECT u.status, e.found IS NOT NULL
    FROM input AS i
    LEFT JOIN updated AS u ON u.id = i.request_id
    LEFT JOIN LATERAL (SELECT true AS found
                         FROM orchestration_results AS r
                        WHERE u.id IS NULL
                          AND r.request_id = i.request_id AND r.attempt = i.attempt AND r.worker_id = i.worker_id
                        LIMIT 1) AS e ON true
   ORDER BY i.ordinality;
END;
$$;
