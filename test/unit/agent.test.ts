import { describe, expect, it } from "@effect/vitest"
import { inheritedEnv, metadataEnv, toEnvName } from "../../src/agent/AgentEnvironment.js"
import { parseResultObject, toOutcome } from "../../src/agent/AgentResult.js"
import { agentArgs } from "../../src/agent/AgentRunner.js"
import { checkBranch, checkRepoUrl, redactUrl } from "../../src/git/RepoUrl.js"
import type { SubprocessResult } from "../../src/process/Subprocess.js"
import { InvalidRequest } from "../../src/queue/RequestConfig.js"

const proc = (stdout: string, exitCode: number | null = 0, signal: string | null = null): SubprocessResult => ({
  pid: 1,
  timedOut: false,
  endedWhenDone: false,
  exitCode,
  signal,
  stdout: { text: stdout, bytes: stdout.length, truncated: false, lastLine: stdout.trim().split("\n").at(-1) ?? "" },
  stderr: { text: "", bytes: 0, truncated: false, lastLine: "" }
})
const result = (fields: Record<string, unknown>) =>
  JSON.stringify({ type: "result", subtype: "success", is_error: false, result: "done", session_id: "s1", ...fields })
const outcome = (p: SubprocessResult | null, timedOut = false) =>
  toOutcome({ command: "mclaude", process: p, timedOut, timeoutMs: 1000, durationMs: 5 })

describe("mapping what the agent printed to a result status", () => {
  it("is success only for exit 0, a parsed result and is_error false", () => {
    const o = outcome(proc(result({ num_turns: 2, total_cost_usd: 0.5, modelUsage: { "claude-x": {} } })))
    expect(o).toMatchObject({
      status: "success",
      error: null,
      sessionId: "s1",
      numTurns: 2,
      costUsd: 0.5,
      model: "claude-x"
    })
  })
  it("is error when is_error is true even with subtype success (an API error)", () => {
    expect(outcome(proc(result({ is_error: true, result: "API Error: 500" }))).status).toBe("error")
  })
  it("is partial for error_max_turns and error_max_budget_usd", () => {
    expect(outcome(proc(result({ subtype: "error_max_turns", is_error: true }), 1)).status).toBe("partial")
    expect(outcome(proc(result({ subtype: "error_max_budget_usd", is_error: true }), 1)).status).toBe("partial")
  })
  it("never reports a permission denial as success", () => {
    const o = outcome(proc(result({ permission_denials: [{ tool_name: "Bash" }] })))
    expect(o.status).toBe("partial")
    expect(o.error).toContain("Bash")
  })
  it("is error for a non-zero exit, unparsable output or a signal", () => {
    expect(outcome(proc(result({}), 2)).status).toBe("error")
    const garbled = outcome(proc("not json", 0))
    expect(garbled.status).toBe("error")
    expect(garbled.error).toContain("without a JSON result: not json")
    expect(outcome(proc("", null, "SIGKILL")).error).toBe("the agent was killed by SIGKILL")
  })
  it("is timeout when the run was stopped for time", () => {
    expect(outcome(null, true)).toMatchObject({
      status: "timeout",
      error: "the agent did not finish within 1000 ms and was stopped"
    })
  })
  it("finds the result object after other output lines", () => {
    expect(parseResultObject(`warming up\n${result({ result: "x" })}\n`)?.result).toBe("x")
    expect(parseResultObject('{"type":"assistant"}')).toBeNull()
  })
})

describe("the agent's command line", () => {
  it("puts the prompt after -- so it is never read as a flag", () => {
    expect(
      agentArgs({ prompt: "--help me", model: "opus", flags: ["--allowedTools", "Bash", "Edit"], outputFormat: "json" })
    ).toEqual([
      "--print",
      "--output-format",
      "json",
      "--model",
      "opus",
      "--allowedTools",
      "Bash",
      "Edit",
      "--",
      "--help me"
    ])
    expect(agentArgs({ prompt: "p", model: null, flags: [], outputFormat: "json" })).toEqual([
      "--print",
      "--output-format",
      "json",
      "--",
      "p"
    ])
    expect(agentArgs({ prompt: "p", model: null, flags: [], outputFormat: "stream-json" })).toEqual([
      "--print",
      "--output-format",
      "stream-json",
      "--verbose",
      "--",
      "p"
    ])
  })
})

describe("metadata as environment variables", () => {
  it("turns camelCase keys into SCREAMING_SNAKE_CASE", () => {
    expect(toEnvName("supabaseUrl")).toBe("SUPABASE_URL")
    expect(toEnvName("SUPABASE_URL")).toBe("SUPABASE_URL")
    expect(toEnvName("prNumber")).toBe("PR_NUMBER")
    expect(toEnvName("api-key")).toBe("API_KEY")
    expect(toEnvName("HTTPServer")).toBe("HTTP_SERVER")
    expect(metadataEnv({ supabaseUrl: "https://x", retries: 3, dryRun: false, gone: null })).toEqual({
      SUPABASE_URL: "https://x",
      RETRIES: "3",
      DRY_RUN: "false"
    })
  })
  it("refuses keys that would set dangerous variables, naming them", () => {
    for (const key of [
      "path",
      "PATH",
      "ldPreload",
      "LD_LIBRARY_PATH",
      "nodeOptions",
      "home",
      "claudeConfigDir",
      "anthropicBaseUrl",
      "gitSshCommand",
      "sshAuthSock",
      "bashEnv"
    ]) {
      const refused = metadataEnv({ [key]: "x" })
      expect(refused).toBeInstanceOf(InvalidRequest)
      expect((refused as InvalidRequest).message).toContain(`"${key}"`)
    }
  })
  it("refuses values that are not scalars, carry NUL bytes, or are huge", () => {
    expect((metadataEnv({ a: { b: 1 } }) as InvalidRequest).message).toContain("must be a string, number or boolean")
    expect(metadataEnv({ a: "x\u0000y" })).toBeInstanceOf(InvalidRequest)
    expect(metadataEnv({ a: "x".repeat(70_000) })).toBeInstanceOf(InvalidRequest)
    expect(metadataEnv([1, 2])).toBeInstanceOf(InvalidRequest)
    expect(metadataEnv({ "1abc": "x" })).toBeInstanceOf(InvalidRequest)
    expect(metadataEnv({ fooBar: "1", FOO_BAR: "2" })).toBeInstanceOf(InvalidRequest)
  })
  it("passes the agent only allow-listed worker variables", () => {
    const env = inheritedEnv({
      PATH: "/bin",
      ANTHROPIC_AUTH_TOKEN: "t",
      DATABASE_URL: "postgres://secret",
      SSH_PRIVATE_KEY: "k",
      NODE_OPTIONS: "--x"
    })
    expect(env).toEqual({ PATH: "/bin", ANTHROPIC_AUTH_TOKEN: "t" })
  })
  it("passes the variables a pipeline names in agent.pass_env as well, and no others", () => {
    const from = { PATH: "/bin", SUPABASE_ACCESS_TOKEN: "s", SUPABASE_DB_PASSWORD: "p", OTHER: "o", DATABASE_URL: "d" }
    expect(inheritedEnv(from, ["SUPABASE_*"])).toEqual({
      PATH: "/bin",
      SUPABASE_ACCESS_TOKEN: "s",
      SUPABASE_DB_PASSWORD: "p"
    })
    expect(inheritedEnv(from, ["OTHER"])).toEqual({ PATH: "/bin", OTHER: "o" })
  })
})

describe("repository URLs and branches from a request", () => {
  it("accepts the usual forms", () => {
    for (const url of [
      "https://github.com/o/r.git",
      "git@github.com:o/r.git",
      "ssh://git@h/r",
      "file:///srv/r.git",
      "/srv/r.git"
    ]) {
      expect(checkRepoUrl(url)).toBeNull()
    }
  })
  it("refuses options, remote helpers, credentials and non-URLs", () => {
    expect(checkRepoUrl("--upload-pack=touch /tmp/x")?.message).toContain('starts with "-"')
    expect(checkRepoUrl("ext::sh -c touch% /tmp/pwned")?.message).toContain("remote helper")
    const withCreds = checkRepoUrl("https://user:hunter2@github.com/o/r.git")
    expect(withCreds?.message).toContain("carries credentials")
    expect(withCreds?.message).not.toContain("hunter2")
    expect(checkRepoUrl("not a url")).toBeInstanceOf(InvalidRequest)
    expect(redactUrl("https://tok@h/x")).toBe("https://***@h/x")
  })
  it("refuses branch names git would misread", () => {
    for (const b of ["--orphan", "../x", "a..b", "x y", "x:y", "-b", "a.lock", ""])
      expect(checkBranch(b)).toBeInstanceOf(InvalidRequest)
    for (const b of ["main", "feature/x", "release-1.2"]) expect(checkBranch(b)).toBeNull()
  })
})
