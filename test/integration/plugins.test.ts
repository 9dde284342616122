/**
 * Plugins: loaded from the pipeline file, registered like the built-ins, and kept from hurting anything
 * but their own request.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { RegistryLive } from "../../src/cli/Cli.js"
import { load, PipelineInvalid } from "../../src/pipeline/Compiler.js"
import { runCli } from "../support/cli.js"
import { runOnce, writePipeline } from "../support/harness.js"
import { TestDatabase } from "../support/TestDatabase.js"

const fixtures = path.join(import.meta.dirname, "..", "fixtures", "plugins")

const problemsOf = (file: string) =>
  load(file).pipe(
    Effect.flip,
    Effect.map((e) => {
      expect(e).toBeInstanceOf(PipelineInvalid)
      return (e as PipelineInvalid).problems
    }),
    Effect.provide(RegistryLive)
  )

const pipelineWith = (plugins: ReadonlyArray<string>, stages: string) =>
  writePipeline({ top: `plugins:\n${plugins.map((p) => `  - ${p}`).join("\n")}`, stages })

layer(TestDatabase, { excludeTestServices: true, timeout: "60 seconds" })("plugins", (it) => {
  it.effect("load from a path, as one stage or as a Layer of several", () =>
    Effect.gen(function* () {
      const pipeline = pipelineWith(
        [path.join(fixtures, "one-stage.ts"), path.join(fixtures, "misbehaving.ts")],
        "\n  - claim\n  - one-stage\n  - use: notes\n    with: { text: hi }\n  - record\n"
      )
      const compiled = yield* load(pipeline.file).pipe(Effect.provide(RegistryLive))
      expect(compiled.stages.map((s) => [s.id, s.origin])).toEqual([
        ["claim", "stageline (built-in)"],
        ["one-stage", `plugin ${path.join(fixtures, "one-stage.ts")}`],
        ["notes", `plugin ${path.join(fixtures, "misbehaving.ts")}`],
        ["record", "stageline (built-in)"]
      ])
      // A plugin stage without a timeout of its own gets the plugin default.
      expect(compiled.stages[1]!.timeoutMs).toBe(600_000)
    })
  )

  it.effect("load by package name, looked up from the pipeline file's folder", () =>
    Effect.gen(function* () {
      const pipeline = pipelineWith(["stageline-plugin-hello"], "\n  - claim\n  - hello\n  - record\n")
      const pkg = path.join(pipeline.dir, "node_modules", "stageline-plugin-hello")
      fs.mkdirSync(pkg, { recursive: true })
      // The deployment's own effect, as an installed plugin would find it.
      fs.symlinkSync(path.resolve("node_modules", "effect"), path.join(pipeline.dir, "node_modules", "effect"))
      fs.writeFileSync(
        path.join(pkg, "package.json"),
        JSON.stringify({ name: "stageline-plugin-hello", type: "module", main: "index.js" })
      )
      // Plain JavaScript, as a published plugin would ship; the stage shape is all it needs.
      fs.writeFileSync(
        path.join(pkg, "index.js"),
        `import { Effect, Schema } from "effect"
export default {
  name: "hello",
  description: "says hello",
  options: Schema.Struct({}),
  requires: ["request"],
  provides: [],
  runsAfterFailure: false,
  run: () => () => Effect.succeed({})
}
`
      )
      const compiled = yield* load(pipeline.file).pipe(Effect.provide(RegistryLive))
      expect(compiled.stages[1]).toMatchObject({ id: "hello", origin: "plugin stageline-plugin-hello" })
    })
  )

  it.effect("name the plugin and its line when it cannot be loaded or exports no stage", () =>
    Effect.gen(function* () {
      const missing = yield* problemsOf(pipelineWith(["./no-such-plugin.ts"], "\n  - claim\n  - record\n").file)
      expect(missing).toHaveLength(1)
      expect(missing[0]).toMatchObject({ line: 3, field: "plugins[0]" })
      expect(missing[0]!.message).toContain('cannot load plugin "./no-such-plugin.ts"')

      const wrong = yield* problemsOf(
        pipelineWith([path.join(fixtures, "not-a-stage.ts")], "\n  - claim\n  - record\n").file
      )
      expect(wrong[0]!.message).toContain("must export by default a stage")

      const clash = yield* problemsOf(
        pipelineWith(
          [path.join(fixtures, "one-stage.ts"), path.join(fixtures, "one-stage.ts")],
          "\n  - claim\n  - record\n"
        ).file
      )
      expect(clash[0]!.message).toContain('stage "one-stage"')
      expect(clash[0]!.message).toContain("already registered")
      expect(clash[0]).toMatchObject({ line: 4, field: "plugins[1]" })
    })
  )

  it.effect("outside a module package, say how to make a .ts plugin load, and load once told", () =>
    Effect.promise(async () => {
      // As in the image: the plugin beside its pipeline, stageline and effect reachable through node_modules.
      // Through the real command, since the test runner compiles every .ts file as a module itself.
      const pipeline = pipelineWith(["./one-stage.ts"], "\n  - claim\n  - one-stage\n  - record\n")
      fs.copyFileSync(path.join(fixtures, "one-stage.ts"), path.join(pipeline.dir, "one-stage.ts"))
      const root = path.join(import.meta.dirname, "..", "..")
      fs.mkdirSync(path.join(pipeline.dir, "node_modules"))
      fs.symlinkSync(root, path.join(pipeline.dir, "node_modules", "stageline"))
      fs.symlinkSync(path.join(root, "node_modules", "effect"), path.join(pipeline.dir, "node_modules", "effect"))
      const refused = await runCli(["validate", pipeline.file])
      expect(refused.code).toBe(1)
      expect(refused.output).toContain('says "type": "module", or it is named .mts')
      fs.writeFileSync(path.join(pipeline.dir, "package.json"), '{ "type": "module" }\n')
      const loaded = await runCli(["validate", pipeline.file])
      expect(loaded.code, loaded.output).toBe(0)
      expect(loaded.output).toContain('"origin": "plugin ./one-stage.ts"')
    })
  )

  it.effect("get the engine's own modules, whether it runs compiled or from its sources", () =>
    Effect.promise(async () => {
      const pipeline = pipelineWith(
        [path.join(fixtures, "engine-copy.ts")],
        "\n  - claim\n  - engine-copy\n  - record\n"
      )
      const copyGiven = async (env: Record<string, string | undefined>) => {
        const { code, output } = await runCli(["validate", pipeline.file], env)
        expect(code, output).toBe(0)
        return (JSON.parse(output) as { stages: Array<{ options: { copy?: string } }> }).stages[1]!.options.copy
      }
      // The test setup has compiled the engine, so the command runs that.
      expect(await copyGiven({ STAGELINE_FROM_SOURCE: undefined })).toBe("compiled")
      expect(await copyGiven({ STAGELINE_FROM_SOURCE: "1" })).toBe("sources")
    })
  )

  it.effect("import, as stageline/pipeline, every value the pipeline module exports", () =>
    Effect.promise(async () => {
      const entry = await import("stageline/pipeline")
      const index = await import("../../src/pipeline/index.js")
      expect(Object.keys(entry).sort()).toEqual(Object.keys(index).sort())
    })
  )

  it.effect("fail only their own request, naming the plugin, when they throw, hang or break their promise", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const plugin = path.join(fixtures, "misbehaving.ts")
      const cases = {
        throws: `\n  - claim\n  - throws\n  - record\n`,
        hangs: `\n  - claim\n  - use: hangs\n    timeout: 300ms\n  - record\n`,
        "breaks-promise": `\n  - claim\n  - breaks-promise\n  - record\n`
      }
      const expected = {
        throws: ["error", `stage "throws" (plugin ${plugin}) crashed: the plugin fell over`],
        hangs: ["timeout", `stage "hangs" (plugin ${plugin}) did not finish within 300 ms`],
        "breaks-promise": ["error", `stage "breaks-promise" (plugin ${plugin}) promised "note" but did not return it`]
      }
      for (const [name, stages] of Object.entries(cases)) {
        const [row] = yield* sql<{
          id: string
        }>`INSERT INTO orchestration_requests (prompt) VALUES (${name}) RETURNING id`
        const [after] = yield* sql<{
          id: string
        }>`INSERT INTO orchestration_requests (prompt) VALUES ('next') RETURNING id`
        yield* runOnce(pipelineWith([plugin], stages).file)
        const [result] = yield* sql<{ status: string; error: string }>`SELECT status, error FROM orchestration_results
          WHERE request_id = ${row!.id}`
        expect([name, result!.status, result!.error]).toEqual([name, ...expected[name as keyof typeof expected]])
        // The worker went on to the next request.
        const [next] = yield* sql<{ status: string }>`SELECT status FROM orchestration_requests WHERE id = ${after!.id}`
        expect([name, next!.status]).toEqual([name, "failed"])
      }
    })
  )
})
