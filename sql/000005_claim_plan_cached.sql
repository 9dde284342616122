-- The claim, unchanged in what it does, now in PL/pgSQL: PostgreSQL re-plans the body of a SQL function
-- on every call, while PL/pgSQL keeps the plan of its statement for the life of the connection. The claim
-- runs once per request, so its planning was a large part of its cost.
CREATE OR REPLACE FUNCTION claim_next_request(worker_id text, lease interval DEFAULT interval '60 seconds')
RETURNS SETOF orchestration_requests
LANGUAGE plpgsql
AS $$
BEGIN
  RETURN QUERY
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
END;
$$;
