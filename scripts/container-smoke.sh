#!/bin/bash
# Builds the base image and every example's image, then runs the code-review-bot stack end to end:
# PostgreSQL and the worker up, one request inserted with psql, the result row checked. The worker runs
# the real Claude Code (the image's mclaude) against the scripted model; nothing leaves the machine.
#
#   bash scripts/container-smoke.sh            (podman here; CONTAINER=docker COMPOSE="docker compose" elsewhere)
#
# On a machine without a Docker engine or a registry, run ../shared/tools/containers/setup.sh and
# base-images.sh first (podman, podman-compose and local base images), and export the CONTAINERS_CONF
# the first one prints.
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${CONTAINER:-podman}
compose=${COMPOSE:-podman-compose}
project=stageline-smoke-$$
stack=$(mktemp -d)
say() { printf '\n== %s\n' "$*"; }

# The stack's containers find each other by service name: podman's CNI networks need the dnsname plugin.
if [ "$engine" = podman ] && [ "$(podman info --format '{{.Host.NetworkBackend}}')" = cni ] \
  && [ ! -x /usr/lib/cni/dnsname ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing the CNI dnsname plugin, so that containers resolve each other's names"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-github-containernetworking-plugin-dnsname >/dev/null
  else
    echo "podman's networks resolve no names here: install golang-github-containernetworking-plugin-dnsname" >&2
    exit 1
  fi
fi

say "building the base image and the examples' images"
"$engine" build --format docker -t stageline:latest . >"$stack/build.log" 2>&1 || { tail -40 "$stack/build.log"; exit 1; }
for example in code-review-bot supabase-assistant custom-stage; do
  "$engine" build --format docker -t "stageline-$example:latest" "examples/$example" >>"$stack/build.log" 2>&1 \
    || { tail -40 "$stack/build.log"; exit 1; }
  echo "built stageline-$example:latest"
done
"$engine" run --rm --entrypoint mclaude stageline:latest --version

say "starting the code-review-bot stack ($project)"
cp -r examples/code-review-bot/. "$stack/"
cp scripts/container-smoke.compose.yml "$stack/smoke.compose.yml"
password=smoke-$RANDOM$RANDOM
cat >"$stack/.env" <<ENV
POSTGRES_PASSWORD=$password
ANTHROPIC_AUTH_TOKEN=scripted-token
WORKER_COUNT=1
ENV
run_compose() { (cd "$stack" && "$compose" -p "$project" -f docker-compose.yml -f smoke.compose.yml "$@"); }
# A service's container, by the labels both compose tools set (podman-compose 1.0 prints its merged
# configuration on stdout, so its `exec` output cannot be read back).
container() {
  "$engine" ps -q --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" | head -1
}
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    say "worker logs (last 40 lines)"
    "$engine" logs "$(container code-review-bot)" 2>&1 | tail -40 || true
  fi
  run_compose down -v >/dev/null 2>&1 || true
  # podman-compose 1.0 leaves the stack's network behind.
  if [ "$engine" = podman ]; then podman network rm "${project}_default" >/dev/null 2>&1 || true; fi
  rm -rf "$stack"
  exit "$status"
}
trap cleanup EXIT
run_compose up -d --no-build >"$stack/up.log" 2>&1 || { cat "$stack/up.log"; exit 1; }

# The password too: the official image trusts local connections, a stand-in image may not.
psql() {
  "$engine" exec "$(container db)" env PGPASSWORD="$password" \
    psql -U orchestration -d orchestration -v ON_ERROR_STOP=1 -tA "$@"
}
wait_for() { # what, seconds, command...
  local what=$1 seconds=$2
  shift 2
  for _ in $(seq "$seconds"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "timed out after ${seconds}s waiting for $what" >&2
  return 1
}
tables_ready() { [ "$(psql -c "SELECT to_regclass('orchestration_results') IS NOT NULL" 2>/dev/null)" = t ]; }
worker_ready() { "$engine" exec "$(container code-review-bot)" node /opt/stageline/scripts/healthcheck.mjs /readyz; }
wait_for "the database and the worker's migrations" 120 tables_ready
wait_for "the worker's /readyz" 60 worker_ready
echo "db up, worker ready"

say "submitting a request with psql"
id=$(psql -c "INSERT INTO orchestration_requests (repo_url, prompt) VALUES (
  'git://fixtures:9418/widgets.git',
  'Review this repository for security issues and commit your review as REVIEW.md.'
) RETURNING id" | head -1)
echo "request $id"
finished() { [ -n "$(psql -c "SELECT 1 FROM orchestration_results WHERE request_id = '$id'")" ]; }
wait_for "the result row" 240 finished
recorded() { [ -n "$(psql -c "SELECT 1 FROM orchestration_events WHERE request_id = '$id' AND kind = 'stage-finished' AND stage = 'record'")" ]; }
wait_for "the record stage's event" 15 recorded || true

say "result"
psql -c "SELECT r.status, q.status AS request_status, r.commit_sha IS NOT NULL AS committed, r.duration_ms,
  r.error FROM orchestration_results r JOIN orchestration_requests q ON q.id = r.request_id
  WHERE r.request_id = '$id'"
stages=$(psql -c "SELECT string_agg(stage, ' ' ORDER BY id) FROM orchestration_events
  WHERE request_id = '$id' AND kind IN ('claimed', 'stage-finished')")
echo "stages finished: $stages"
status=$(psql -c "SELECT status FROM orchestration_results WHERE request_id = '$id'")
subject=$(psql -c "SELECT output->'git'->'commits'->0->>'subject' FROM orchestration_results WHERE request_id = '$id'")
echo "agent's commit: $subject"
expected="claim prepare-workspace customize-skill execute-mclaude extract-git-artifacts record"
if [ "$status" != success ] || [ "$stages" != "$expected" ]; then
  echo "SMOKE FAILED: status $status, stages '$stages' (expected '$expected')" >&2
  exit 1
fi
echo "SMOKE PASSED: request $id ended success after all six stages inside the containers"
