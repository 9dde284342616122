-- claim_next_requests keeps one plan per connection, as record_attempts does since 000010. It was planned
-- afresh at every call, a tenth of a millisecond each time, because a plan kept for any number of workers
-- had to guess how many requests it claims (a tenth of the queue) and so joined the claimed rows to the
-- table by reading the table whole. Now it takes the ids first, from the head of the claim index, and then
-- updates those rows by their key: every plan of that is the same, however many it claims and however the
-- queue grew. Same rows, same order, same locks and the same lease as before: the i-th request taken goes
-- to the i-th worker named.
--
-- A later migration that restates claim_next_requests must restate these settings with it: CREATE OR
-- REPLACE replaces a function's settings too.
CREATE OR REPLACE FUNCTION claim_next_requests(worker_ids text[], lease interval)
RETURNS SETOF orchestration_requests
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
  ids uuid[];
BEGIN
  ids := ARRAY(
    SELECT q.id
      FROM orchestration_requests AS q
     WHERE q.status = 'pending' AND q.run_after <= now()
     ORDER BY q.priority DESC, q.run_after, q.created_at
     LIMIT cardinality(claim_next_requests.worker_ids)
       FOR NO KEY UPDATE SKIP LOCKED
  );
  RETURN QUERY
  UPDATE orchestration_requests AS r
     SET status = 'processing',
         claimed_at = now(),
         claimed_by = claim_next_requests.worker_ids[array_position(ids, r.id)],
         attempts = r.attempts + 1,
         lease_expires_at = now() + claim_next_requests.lease,
         heartbeat_at = now(),
         current_stage = NULL
   WHERE r.id = ANY (ids)
  RETURNING r.*;
END;
$$;
