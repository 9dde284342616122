-- Claims for several worker fibers in one statement: the worker gathers the fibers that look for work at
-- the same moment and claims for all of them at once, one round trip and one commit for the lot. The i-th
-- request taken goes to the i-th fiber named; a fiber left over got nothing (the queue had no more).
-- Same order, same SKIP LOCKED and same lease as claim_next_request, which stays for the seed's users.
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
               FOR UPDATE SKIP LOCKED) AS p
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
