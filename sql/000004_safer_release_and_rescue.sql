-- release_stale_requests leaves requests whose worker still renews its lease: with leases, "claimed long
-- ago" no longer means "stuck", and releasing a live run would have two workers run it.
CREATE OR REPLACE FUNCTION release_stale_requests(older_than interval)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
  released integer;
BEGIN
  UPDATE orchestration_requests
     SET status = 'pending',
         claimed_at = NULL,
         claimed_by = NULL,
         lease_expires_at = NULL,
         current_stage = NULL
   WHERE status = 'processing'
     AND claimed_at < now() - older_than
     AND (lease_expires_at IS NULL OR lease_expires_at < now());
  GET DIAGNOSTICS released = ROW_COUNT;
  IF released > 0 THEN
    PERFORM pg_notify('stageline_requests', 'released');
  END IF;
  RETURN released;
END;
$$;

-- Rescue now follows retry_on (a lost worker is a "crash"), and finishes a cancelled request whose worker
-- died before recording it.
DROP FUNCTION rescue_expired_leases(integer, interval);

CREATE FUNCTION rescue_expired_leases(default_max_attempts integer, backoff interval, retry_crashes boolean DEFAULT true)
RETURNS TABLE (id uuid, status text, attempt integer, claimed_by text)
LANGUAGE sql
AS $$
  WITH expired AS (
    SELECT r.id, r.attempts, r.claimed_by, r.status AS was,
           coalesce(r.max_attempts, default_max_attempts) AS max_attempts
      FROM orchestration_requests r
     WHERE r.status IN ('processing', 'cancelled') AND r.finished_at IS NULL AND r.lease_expires_at < now()
     ORDER BY r.lease_expires_at
     LIMIT 100
       FOR UPDATE SKIP LOCKED
  ), lost AS (
    INSERT INTO orchestration_results (request_id, attempt, status, error, worker_id, output, duration_ms)
    SELECT e.id, e.attempts,
           CASE WHEN e.was = 'cancelled' THEN 'cancelled' ELSE 'error' END,
           'the worker ' || coalesce(e.claimed_by, '?') || ' stopped renewing its lease (it died or lost the database)',
           e.claimed_by, '{"stdout": "", "lost": true}'::jsonb, NULL
      FROM expired e
    ON CONFLICT (request_id, attempt) DO NOTHING
  )
  UPDATE orchestration_requests r
     SET status = CASE WHEN e.was = 'cancelled' THEN 'cancelled'
                       WHEN retry_crashes AND e.attempts < e.max_attempts THEN 'pending'
                       ELSE 'failed' END,
         last_error = 'lease expired on attempt ' || e.attempts || ' (worker ' || coalesce(e.claimed_by, '?') || ')',
         claimed_by = NULL,
         claimed_at = NULL,
         lease_expires_at = NULL,
         current_stage = NULL,
         run_after = now() + backoff * power(2, greatest(e.attempts - 1, 0)),
         finished_at = CASE WHEN e.was = 'cancelled' OR NOT retry_crashes OR e.attempts >= e.max_attempts
                            THEN now() ELSE NULL END
    FROM expired e
   WHERE r.id = e.id
  RETURNING r.id, r.status, e.attempts, e.claimed_by;
$$;
