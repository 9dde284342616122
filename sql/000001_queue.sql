-- The request queue and its results: the seed's tables and columns, unchanged in name, type and default,
-- so every statement its users type keeps working; plus the columns the claim needs to stay cheap and fair.

CREATE TABLE orchestration_requests (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at      timestamptz NOT NULL DEFAULT now(),
  status          text NOT NULL DEFAULT 'pending',
  repo_url        text,
  branch          text DEFAULT 'main',
  prompt          text NOT NULL,
  config          jsonb,
  metadata        jsonb,
  claimed_at      timestamptz,
  claimed_by      text,
  -- Beyond the seed. Each has a default, so the seed's plain INSERT (repo_url, prompt) still works.
  attempts        integer NOT NULL DEFAULT 0,
  priority        integer NOT NULL DEFAULT 0,
  run_after       timestamptz NOT NULL DEFAULT now(),
  idempotency_key text,
  last_error      text,
  finished_at     timestamptz,
  CONSTRAINT orchestration_requests_status_check
    CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
  CONSTRAINT orchestration_requests_idempotency_key_key UNIQUE (idempotency_key)
);

-- The claim reads only pending rows in claim order; a partial index keeps it an index scan of the head of
-- the queue however many finished rows pile up behind it.
CREATE INDEX orchestration_requests_claim_idx
  ON orchestration_requests (priority DESC, run_after, created_at)
  WHERE status = 'pending';

-- release_stale_requests and the operators' "processing" query look only at claimed rows.
CREATE INDEX orchestration_requests_processing_idx
  ON orchestration_requests (claimed_at)
  WHERE status = 'processing';

CREATE TABLE orchestration_results (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  request_id   uuid REFERENCES orchestration_requests(id),
  status       text,
  output       jsonb,
  pr_url       text,
  commit_sha   text,
  duration_ms  integer,
  error        text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  -- Beyond the seed.
  attempt      integer NOT NULL DEFAULT 1,
  worker_id    text,
  branch_name  text,
  session_id   text,
  model        text,
  num_turns    integer,
  cost_usd     numeric(12, 6),
  usage        jsonb,
  CONSTRAINT orchestration_results_status_check
    CHECK (status IN ('success', 'error', 'partial', 'timeout', 'cancelled')),
  -- One row per attempt: a record retried after a lost connection cannot write a second one.
  CONSTRAINT orchestration_results_request_attempt_key UNIQUE (request_id, attempt)
);

CREATE INDEX orchestration_results_created_at_idx ON orchestration_results (created_at DESC);

-- Claims the next pending request for a worker, or returns no row. SKIP LOCKED lets any number of workers
-- claim at once without waiting on each other; ties go to priority, then to the oldest request.
CREATE FUNCTION claim_next_request(worker_id text)
RETURNS SETOF orchestration_requests
LANGUAGE sql
AS $$
  UPDATE orchestration_requests AS r
     SET status = 'processing',
         claimed_at = now(),
         claimed_by = claim_next_request.worker_id,
         attempts = r.attempts + 1
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

-- The seed's recovery function: puts requests claimed longer ago than the interval back to pending and
-- returns how many. The attempt they were on still counts: it was claimed and did not finish.
CREATE FUNCTION release_stale_requests(older_than interval)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
  released integer;
BEGIN
  UPDATE orchestration_requests
     SET status = 'pending',
         claimed_at = NULL,
         claimed_by = NULL
   WHERE status = 'processing'
     AND claimed_at < now() - older_than;
  GET DIAGNOSTICS released = ROW_COUNT;
  IF released > 0 THEN
    PERFORM pg_notify('stageline_requests', 'released');
  END IF;
  RETURN released;
END;
$$;

-- Wakes listening workers when work arrives. One notification per statement, not per row: a bulk insert
-- wakes the workers once, and each of them then claims until the queue is empty.
CREATE FUNCTION notify_request_inserted()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM pg_notify('stageline_requests', 'inserted');
  RETURN NULL;
END;
$$;

CREATE TRIGGER orchestration_requests_notify
  AFTER INSERT ON orchestration_requests
  FOR EACH STATEMENT
  EXECUTE FUNCTION notify_request_inserted();
