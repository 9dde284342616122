/**
 * Secrets stay out of what stageline writes. The worker runs with ANTHROPIC_AUTH_TOKEN, GH_TOKEN and
 * SSH_PRIVATE_KEY set to unique markers, requests carry markers in their metadata, and the requests are
 * made to take every path that uses or reports them (a clone with the key, one with the token, a refused
 * key, a value over the limit, a crash, a timeout, an agent that prints its own token). Then every log line
 * of the worker process, every row of the three tables and every file left on disk is searched.
 *
 * "The agent's own output" is what the agent process printed: output.stdout, output.stderr and
 * output.result of its result row, and the events of kind `agent` (its stream, line by line). The agent is
 * given the tokens and the metadata on purpose; what it does with them is the prompt's business. Everything
 * else, including the rest of output (failure, stages, workspace, git) and the error column, is stageline's
 * and must hold none of them.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { runCli } from "../support/cli.js"
import { makeBareRepo, writePipeline } from "../support/harness.js"
import {
  connect,
  insertRequests,
  report,
  startWorker,
  useOwnDatabase,
  waitUntilSettled,
  workerEnv
} from "./support/Fleet.js"

const unique = crypto.randomUUID().replaceAll("-", "")
const markers = {
  ANTHROPIC_AUTH_TOKEN: `sk-ant-marker-auth-${unique}`,
  GH_TOKEN: `ghp_marker_gh_${unique}`,
  SSH_PRIVATE_KEY: `-----BEGIN OPENSSH PRIVATE KEY-----\\nmarkerssh${unique}\\n-----END OPENSSH PRIVATE KEY-----`,
  metaOne: `meta-marker-one-${unique}`,
  metaTwo: `meta-marker-two-${unique}`,
  metaThree: `meta-marker-three-${unique}`
}
const needles = [
  markers.ANTHROPIC_AUTH_TOKEN,
  markers.GH_TOKEN,
  `markerssh${unique}`,
  markers.metaOne,
  markers.metaTwo,
  markers.metaThree
]

const filesUnder = (dir: string): Array<string> =>
  fs.existsSync(dir)
    ? fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
        const p = path.join(dir, e.name)
        return e.isDirectory() ? filesUnder(p) : e.isFile() ? [p] : []
      })
    : []

describe("secrets", () => {
  const database = useOwnDatabase()

  it("never appear in the worker's logs, the rows it writes, or files it leaves, the agent's own output aside", async () => {
    const env = workerEnv(database.url, {
      WORKER_COUNT: "2",
      STAGELINE_MAX_ATTEMPTS: "1",
      LOG_LEVEL: "debug",
      GIT_TOKEN_HOSTS: "127.0.0.1",
      ANTHROPIC_AUTH_TOKEN: markers.ANTHROPIC_AUTH_TOKEN,
      GH_TOKEN: markers.GH_TOKEN,
      SSH_PRIVATE_KEY: markers.SSH_PRIVATE_KEY
    })
    expect((await runCli(["migrate"], env)).code).toBe(0)
    const db = connect(database.url)
    const repo = makeBareRepo()
    const ids = await insertRequests(db, [
      { prompt: "@say hello", metadata: { apiKey: markers.metaOne } },
      { prompt: "@crash", metadata: { secretValue: markers.metaTwo } },
      { prompt: "@sleep 20000", metadata: { token: markers.metaThree }, config: { timeout_minutes: 0.01 } },
      { prompt: "@say over ssh", repo_url: "ssh://git@127.0.0.1:1/x.git", metadata: { apiKey: markers.metaOne } },
      { prompt: "@say over https", repo_url: "https://127.0.0.1:1/x.git", metadata: { apiKey: markers.metaOne } },
      { prompt: "@say refused", metadata: { PATH: markers.metaTwo } },
      { prompt: "@say too big", metadata: { big: markers.metaThree + "x".repeat(70_000) } },
      { prompt: "@say with a clone", repo_url: repo.url, metadata: { apiKey: markers.metaOne } },
      // The agent's own output: it prints what it was given.
      { prompt: "@env ANTHROPIC_AUTH_TOKEN GH_TOKEN API_KEY", metadata: { apiKey: markers.metaOne } }
    ])
    const worker = startWorker(writePipeline().file, "secrets", env)
    await waitUntilSettled(db, 90_000)
    expect((await worker.stop()).code).toBe(0)

    const { rows: requests } = await db.query("SELECT to_jsonb(q) - 'metadata' AS row FROM orchestration_requests q")
    const { rows: results } = await db.query(
      `SELECT to_jsonb(r) - 'output' || jsonb_build_object('output', r.output - 'stdout' - 'stderr' - 'result') AS row,
              r.output AS output, r.request_id
         FROM orchestration_results r`
    )
    const { rows: events } = await db.query(
      "SELECT to_jsonb(e) AS row FROM orchestration_events e WHERE kind <> 'agent'"
    )
    const logLines = worker.output().split("\n")
    const places: Array<[string, string]> = [
      ...logLines.map((l, i): [string, string] => [`log line ${i + 1}`, l]),
      ...requests.map((r, i): [string, string] => [`request row ${i + 1}`, JSON.stringify(r.row)]),
      ...results.map((r, i): [string, string] => [`result row ${i + 1}`, JSON.stringify(r.row)]),
      ...events.map((r, i): [string, string] => [`event row ${i + 1}`, JSON.stringify(r.row)]),
      ...filesUnder(env.WORKSPACE_BASE).map((f): [string, string] => [`file ${f}`, fs.readFileSync(f, "latin1")])
    ]
    const leaks = places.flatMap(([where, text]) =>
      needles.filter((n) => text.includes(n)).map((n) => `${where} holds ${n.slice(0, 24)}…`)
    )
    // The scan reaches where the secrets were: the agent did print its own, and the worker did log and write.
    const agentOwn = results.find((r) => r.request_id === ids[8])!.output
    expect(JSON.stringify(agentOwn)).toContain(markers.ANTHROPIC_AUTH_TOKEN)
    expect(JSON.stringify(agentOwn)).toContain(markers.metaOne)
    expect(logLines.length).toBeGreaterThan(ids.length * 3)
    expect(results).toHaveLength(ids.length)
    report("secrets", {
      requests: ids.length,
      scanned: { logLines: logLines.length, requests: requests.length, results: results.length, events: events.length },
      leaks: leaks.length
    })
    expect(leaks).toEqual([])
    await db.end()
  }, 150_000)
})
