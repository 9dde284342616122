-- insert_events writes the events of requests that still exist and skips the others. A batch holds the
-- events of every request a worker ran over the last moment, and a request deleted meanwhile (an operator's
-- DELETE) made the whole batch fail its foreign key: the events of every other request in it were dropped
-- with it. Now the requests named are locked (FOR KEY SHARE, as the foreign key's own check locks them, in
-- id order) before the insert, so that none of them can be deleted until it commits; events of a request
-- already gone are skipped. The foreign key stays: it is what deletes a request's events with it.
--
-- The lookup reads the requests by key however the table grew after the plan was kept, as the claim's does
-- since 000011 (a plan made on a new database would read the table whole for good).
--
-- An event's time comes as `at_ms`, milliseconds since the epoch, and the database makes the timestamp:
-- formatting a timestamp for each of a request's events took 2-3% of a worker's time for a request that does
-- nothing. `at`, a timestamp as text, is still read, for a worker of an earlier version writing during a
-- rolling upgrade.
CREATE OR REPLACE FUNCTION insert_events(events jsonb)
RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
  live uuid[];
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  live := ARRAY(
    SELECT q.id
      FROM orchestration_requests AS q
     WHERE q.id = ANY (ARRAY(SELECT DISTINCT (e ->> 'request_id')::uuid
                               FROM jsonb_array_elements(insert_events.events) AS e))
     ORDER BY q.id
       FOR KEY SHARE OF q
  );
  INSERT INTO orchestration_events (request_id, attempt, at, kind, stage, message, data)
  SELECT e.request_id, e.attempt, coalesce(e.at, to_timestamp(e.at_ms / 1000), clock_timestamp()),
         e.kind, e.stage, e.message, e.data
    FROM ROWS FROM (jsonb_to_recordset(insert_events.events)
           AS (request_id uuid, attempt integer, at timestamptz, at_ms double precision, kind text, stage text,
               message text, data jsonb))
         WITH ORDINALITY AS e
   WHERE e.request_id = ANY (live)
   ORDER BY e.ordinality;
END;
$$;
