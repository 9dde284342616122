-- Progress of every run, as it happens: the claim, each stage's start and finish, and the agent's own
-- stream of events. `stageline logs ID --follow` reads it; so can anyone with SQL.

CREATE TABLE orchestration_events (
  id          bigserial PRIMARY KEY,
  request_id  uuid NOT NULL REFERENCES orchestration_requests(id) ON DELETE CASCADE,
  attempt     integer NOT NULL,
  at          timestamptz NOT NULL DEFAULT clock_timestamp(),
  kind        text NOT NULL,
  stage       text,
  message     text,
  data        jsonb
);

CREATE INDEX orchestration_events_request_idx ON orchestration_events (request_id, id);
