import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Schema } from "effect"
import { RegistryLive } from "../../src/cli/Cli.js"
import { compile, formatProblem, PipelineInvalid } from "../../src/pipeline/Compiler.js"
import { DurationMs } from "../../src/pipeline/PipelineFile.js"
import { pipelineJsonSchema, pipelineJsonSchemaText } from "../../src/pipeline/PipelineSchema.js"

const file = "/pipelines/p.yaml"

const problemsOf = (text: string) =>
  compile(file, text).pipe(
    Effect.flip,
    Effect.map((e) => {
      expect(e).toBeInstanceOf(PipelineInvalid)
      return e.problems
    }),
    Effect.provide(RegistryLive)
  )

const valid = `name: ok
stages:
  - claim
  - prepare-workspace
  - use: execute-mclaude
    timeout: 1h30m
    retry: { times: 2, backoff: { type: fixed, base: 2s }, retry_on: [AgentNotFound] }
  - extract-git-artifacts
  - record
`

describe("the pipeline compiler", () => {
  it.effect("compiles a valid pipeline with its timeouts and retries decoded", () =>
    Effect.gen(function* () {
      const pipeline = yield* compile(file, valid).pipe(Effect.provide(RegistryLive))
      expect(pipeline.stages.map((s) => s.id)).toEqual([
        "claim",
        "prepare-workspace",
        "execute-mclaude",
        "extract-git-artifacts",
        "record"
      ])
      const exec = pipeline.stages[2]!
      expect(exec.timeoutMs).toBe(90 * 60_000)
      expect(exec.retry).toEqual({
        times: 2,
        backoff: { type: "fixed", base: 2000, cap: 60_000 },
        retry_on: ["AgentNotFound"]
      })
      expect(pipeline.stages[4]!.runsAfterFailure).toBe(true)
      expect(pipeline.stages[1]!.runsAfterFailure).toBe(false)
    })
  )

  it.effect("names the file, line, stage and field of an unknown stage", () =>
    Effect.gen(function* () {
      const problems = yield* problemsOf(`name: p\nstages:\n  - claim\n  - use: prepare-workspac\n  - record\n`)
      expect(problems).toHaveLength(1)
      expect(problems[0]).toMatchObject({ file, line: 4, stage: "prepare-workspac", field: "use" })
      expect(problems[0]!.message).toContain('unknown stage "prepare-workspac"')
      expect(problems[0]!.message).toContain("prepare-workspace")
      expect(formatProblem(problems[0]!)).toMatch(
        /^\/pipelines\/p\.yaml:4: stage "prepare-workspac": use: unknown stage/
      )
    })
  )

  it.effect("names the field and line of a bad stage option", () =>
    Effect.gen(function* () {
      const problems = yield* problemsOf(
        `name: p\nstages:\n  - claim\n  - use: customize-skill\n    with:\n      skill: 42\n  - record\n`
      )
      expect(problems).toHaveLength(1)
      expect(problems[0]).toMatchObject({ line: 6, stage: "customize-skill", field: "with.skill" })
    })
  )

  it.effect("refuses agent.pass_env entries that would hand the agent the worker's own secrets", () =>
    Effect.gen(function* () {
      for (const name of ["DATABASE_URL", "SSH_PRIVATE_KEY", "STAGELINE_LEASE_MS", "*", "SSH_*", "DATABASE_*"]) {
        const problems = yield* problemsOf(
          `name: p\nagent:\n  pass_env: [SUPABASE_*, "${name}"]\nstages:\n  - claim\n  - record\n`
        )
        expect(problems, name).toHaveLength(1)
        expect(problems[0]!.message).toContain("never passed to the agent")
      }
      const compiled = yield* compile(
        file,
        `name: p\nagent:\n  pass_env: [SUPABASE_*, FOO]\nstages:\n  - claim\n  - record\n`
      ).pipe(Effect.provide(RegistryLive))
      expect(compiled.agent.pass_env).toEqual(["SUPABASE_*", "FOO"])
    })
  )

  it.effect("refuses unknown keys instead of ignoring them", () =>
    Effect.gen(function* () {
      const atStage = yield* problemsOf(`name: p\nstages:\n  - claim\n  - use: record\n    timout: 5s\n`)
      expect(atStage.some((p) => p.stage === "record" && p.field === "timout" && p.line === 5)).toBe(true)
      const inOptions = yield* problemsOf(
        `name: p\nstages:\n  - claim\n  - use: customize-skill\n    with:\n      domain: [x]\n  - record\n`
      )
      expect(inOptions[0]).toMatchObject({ stage: "customize-skill", field: "with.domain", line: 6 })
      const atTop = yield* problemsOf(`name: p\nqueues: {}\nstages:\n  - claim\n`)
      expect(atTop[0]).toMatchObject({ field: "queues", line: 2, stage: null })
    })
  )

  it.effect("refuses a stage whose requirement no earlier stage provides, saying which stage does", () =>
    Effect.gen(function* () {
      const problems = yield* problemsOf(
        `name: p\nstages:\n  - claim\n  - execute-mclaude\n  - prepare-workspace\n  - record\n`
      )
      expect(problems).toHaveLength(1)
      expect(problems[0]).toMatchObject({ line: 4, stage: "execute-mclaude", field: "requires" })
      expect(problems[0]!.message).toBe(
        'needs "workspace", which no earlier stage provides ("prepare-workspace" provides it, but runs later: move it before "execute-mclaude")'
      )
    })
  )

  it.effect("refuses a name used twice", () =>
    Effect.gen(function* () {
      const problems = yield* problemsOf(`name: p\nstages:\n  - claim\n  - record\n  - record\n`)
      expect(problems[0]).toMatchObject({ line: 5, stage: "record" })
      expect(problems[0]!.message).toContain("used twice")
    })
  )

  it.effect("requires the first stage to claim", () =>
    Effect.gen(function* () {
      const problems = yield* problemsOf(`name: p\nstages:\n  - record\n`)
      expect(problems.map((p) => p.message)).toContain(
        'the first stage must claim a request (provide "request"), as "claim" does'
      )
    })
  )

  it.effect("reports a YAML syntax error with its line", () =>
    Effect.gen(function* () {
      const problems = yield* problemsOf(`name: p\nstages:\n  - claim\n  - use: [record\n`)
      expect(problems[0]!.line).not.toBeNull()
      expect(problems[0]!.stage).toBeNull()
    })
  )

  it.effect("reports every problem at once", () =>
    Effect.gen(function* () {
      const problems = yield* problemsOf(`name: p\nstages:\n  - claim\n  - nope\n  - use: record\n    timeout: soon\n`)
      expect(problems.map((p) => [p.line, p.stage])).toEqual([
        [4, "nope"],
        [6, "record"]
      ])
      const more = yield* problemsOf(`name: p\nstages:\n  - claim\n  - nope\n  - also-nope\n`)
      expect(more.map((p) => p.stage)).toEqual(["nope", "also-nope"])
    })
  )
})

describe("durations in a pipeline file", () => {
  const decode = Schema.decodeUnknownEither(DurationMs)
  it("reads units and sums them", () => {
    expect(decode("500ms")).toEqual(Either.right(500))
    expect(decode("30s")).toEqual(Either.right(30_000))
    expect(decode("1h30m")).toEqual(Either.right(5_400_000))
    expect(decode(250)).toEqual(Either.right(250))
  })
  it("refuses what is not a positive duration", () => {
    for (const bad of ["soon", "5 minutes", "-3s", "0s", 0, -1, "10"]) expect(Either.isLeft(decode(bad))).toBe(true)
  })
})

describe("the pipeline file's JSON Schema", () => {
  it("is the committed pipeline.schema.json, generated from the same Schema the compiler uses", () => {
    const committed = fs.readFileSync(path.join(import.meta.dirname, "..", "..", "pipeline.schema.json"), "utf8")
    // If this fails, regenerate: npm run -s stageline -- schema > pipeline.schema.json
    expect(committed).toBe(pipelineJsonSchemaText())
  })
  it("describes every top-level field and refuses others", () => {
    const schema = pipelineJsonSchema() as unknown as {
      $defs: { Pipeline: { properties: object; additionalProperties: boolean } }
    }
    expect(Object.keys(schema.$defs.Pipeline.properties).sort()).toEqual(
      ["$schema", "agent", "name", "plugins", "queue", "stages", "workspace"].sort()
    )
    expect(schema.$defs.Pipeline.additionalProperties).toBe(false)
  })
})
