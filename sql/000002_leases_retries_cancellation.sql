-- Leases, retries and cancellation.
--
-- A claimed request carries a lease that its worker renews while it runs. When a worker dies, its lease
-- runs out and any live worker puts the request back (or fails it, once its attempts are used up), with
-- a result row for the attempt that was lost. Setting a request's status to 'cancelled' stops it: a
-- pending one is never claimed, a running one is stopped by its worker, which records 'cancelled'.

ALTER TABLE orchestration_requests
  ADD COLUMN max_attempts     integer CHECK (max_attempts IS NULL OR max_attempts BETWEEN 1 AND 100),
  ADD COLUMN lease_expires_at timestamptz,
  ADD COLUMN heartbeat_at     timestamptz,
  ADD COLUMN current_stage    text;

CREATE INDEX orchestration_requests_lease_idx
  ON orchestration_requests (lease_expires_at)
  WHERE status = 'processing';

-- The seed's one-argument call still works: the lease has a default.
DROP FUNCTION claim_next_request(text);

CREATE FUNCTION claim_next_request(worker_id text, lease interval DEFAULT interval '60 seconds')
RETURNS SETOF orchestration_requests
LANGUAGE sql
AS $$
  UPDATE orchestration_requests AS r
     SET status = 'processing',
         claimed_at = now(),
         claimed_by = claim_next_request.worker_id,
         attempts = r.attempts + 1,
         lease_expires_at = now() + claim_next_request.lease,
         heartbeat_at = now(),
         current_stage = NULL
   WHERE r.id = (
           SELECT p.id
             FROM orchestration_requests AS p
            WHERE p.status = 'pending' AND p.run_after <= now()
            ORDER BY p.priority DESC, p.run_after, p.created_at
            LIMIT 1
              FOR UPDATE SKIP LOCKED
         )
  RETURNING r.*;
$$;

-- Requests whose worker stopped renewing its lease: each lost attempt gets a result row saying so, and
-- the request goes back to pending after a backoff, or to failed when its attempts are used up.
CREATE FUNCTION rescue_expired_leases(default_max_attempts integer, backoff interval)
RETURNS TABLE (id uuid, status text, attempt integer, claimed_by text)
LANGUAGE sql
AS $$
  WITH expired AS (
    SELECT r.id, r.attempts, r.claimed_by, coalesce(r.max_attempts, default_max_attempts) AS max_attempts
      FROM orchestration_requests r
     WHERE r.status = 'processing' AND r.lease_expires_at < now()
     ORDER BY r.lease_expires_at
     LIMIT 100
       FOR UPDATE SKIP LOCKED
  ), lost AS (
    INSERT INTO orchestration_results (request_id, attempt, status, error, worker_id, output, duration_ms)
    SELECT e.id, e.attempts, 'error',
           'the worker ' || coalesce(e.claimed_by, '?') || ' stopped renewing its lease (it died or lost the database)',
           e.claimed_by, '{"stdout": "", "lost": true}'::jsonb, NULL
      FROM expired e
    ON CONFLICT (request_id, attempt) DO NOTHING
  )
  UPDATE orchestration_requests r
     SET status = CASE WHEN e.attempts >= e.max_attempts THEN 'failed' ELSE 'pending' END,
         last_error = 'lease expired on attempt ' || e.attempts || ' (worker ' || coalesce(e.claimed_by, '?') || ')',
         claimed_by = NULL,
         claimed_at = NULL,
         lease_expires_at = NULL,
         current_stage = NULL,
         run_after = now() + backoff * power(2, greatest(e.attempts - 1, 0)),
         finished_at = CASE WHEN e.attempts >= e.max_attempts THEN now() ELSE NULL END
    FROM expired e
   WHERE r.id = e.id
  RETURNING r.id, r.status, e.attempts, e.claimed_by;
$$;

-- Now also clears the lease, so a released request is not rescued a second time.
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
     AND claimed_at < now() - older_than;
  GET DIAGNOSTICS released = ROW_COUNT;
  IF released > 0 THEN
    PERFORM pg_notify('stageline_requests', 'released');
  END IF;
  RETURN released;
END;
$$;

-- A request cancelled while it runs: its worker hears at once and stops it.
CREATE FUNCTION notify_request_cancelled()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM pg_notify('stageline_cancel', NEW.id::text);
  RETURN NULL;
END;
$$;

CREATE TRIGGER orchestration_requests_cancel_notify
  AFTER UPDATE OF status ON orchestration_requests
  FOR EACH ROW
  WHEN (NEW.status = 'cancelled' AND OLD.status = 'processing')
  EXECUTE FUNCTION notify_request_cancelled();
