/**
 * The `stageline` command line: run, migrate, enqueue, status, validate.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Config, Console, Effect, Layer, Option } from "effect"
import { BuiltinStages } from "../../stages/index.js"
import { WorkerConfig } from "../config/WorkerConfig.js"
import * as Database from "../db/Database.js"
import { migrate } from "../db/Migrator.js"
import { demo } from "../demo/Demo.js"
import * as StatusServer from "../http/StatusServer.js"
import { describePipeline, formatProblem, load, PipelineInvalid } from "../pipeline/Compiler.js"
import { pipelineJsonSchemaText } from "../pipeline/PipelineSchema.js"
import { StageRegistry } from "../pipeline/StageRegistry.js"
import { Queue } from "../queue/Queue.js"
import * as Worker from "../worker/Worker.js"
import * as Admin from "./AdminCommands.js"
import { logs } from "./LogsCommand.js"

const version = "0.1.0"

/** The stages a pipeline file may name. */
export const RegistryLive = BuiltinStages.pipe(Layer.provideMerge(StageRegistry.layer))

const pipelineOption = Options.file("pipeline", { exists: "yes" }).pipe(
  Options.withAlias("p"),
  Options.withDescription("The pipeline file (YAML or JSON)."),
  Options.withFallbackConfig(Config.string("STAGELINE_PIPELINE"))
)

/** Prints a pipeline's problems and sets exit code 1; other errors pass through. */
const reportInvalid = <A, E, R>(effect: Effect.Effect<A, E | PipelineInvalid, R>) =>
  effect.pipe(
    Effect.catchIf(
      (e): e is PipelineInvalid => e instanceof PipelineInvalid,
      (invalid) =>
        Effect.gen(function* () {
          yield* Console.error(`${invalid.file}: ${invalid.problems.length} problem(s)`)
          for (const p of invalid.problems) yield* Console.error(`  ${formatProblem(p)}`)
          process.exitCode = 1
        })
    )
  )

const run = Command.make(
  "run",
  {
    pipeline: pipelineOption,
    once: Options.boolean("once").pipe(Options.withDescription("Process what is pending, then exit."))
  },
  ({ pipeline, once }) =>
    reportInvalid(
      Effect.gen(function* () {
        // The pipeline is checked before anything else is touched.
        const compiled = yield* load(pipeline).pipe(Effect.provide(RegistryLive))
        yield* Effect.gen(function* () {
          yield* migrate()
          const summary = yield* Worker.run(compiled)
          yield* Effect.logInfo(`processed ${summary.processed} request(s), ${summary.failed} of them failed`)
        }).pipe(
          // The status server is up before the migrations and down after the drain.
          Effect.provide(StatusServer.layer.pipe(Layer.provideMerge(Worker.stageServices(compiled, { once })))),
          Effect.provide(Layer.mergeAll(Database.waitingLayer, WorkerConfig.layerFor(compiled.settings)))
        )
      })
    )
).pipe(Command.withDescription("Run workers that claim requests and take them through the pipeline."))

const migrateCommand = Command.make("migrate", {}, () =>
  migrate().pipe(
    Effect.tap((applied) =>
      Console.log(
        applied.length === 0 ? "schema is up to date" : `applied ${applied.map((m) => `${m.id}_${m.name}`).join(", ")}`
      )
    ),
    Effect.provide(Database.layer)
  )
).pipe(Command.withDescription("Apply the database migrations (idempotent; also done when a worker starts)."))

const json = (name: string) =>
  Options.text(name).pipe(
    Options.mapEffect((text) =>
      Effect.try({
        try: () => JSON.parse(text) as unknown,
        catch: () => `--${name} is not valid JSON`
      }).pipe(Effect.mapError((message) => ({ _tag: "ValidationError", message }) as never))
    ),
    Options.optional
  )

const enqueue = Command.make(
  "enqueue",
  {
    prompt: Args.text({ name: "prompt" }).pipe(Args.withDescription("What the agent is asked to do.")),
    repo: Options.text("repo").pipe(Options.withDescription("Repository to clone (repo_url)."), Options.optional),
    branch: Options.text("branch").pipe(Options.withDefault("main")),
    config: json("config").pipe(Options.withDescription('Request config, e.g. {"model":"sonnet"}.')),
    metadata: json("metadata").pipe(Options.withDescription("Metadata, passed to the agent as env vars.")),
    key: Options.text("idempotency-key").pipe(Options.optional)
  },
  (args) =>
    Effect.gen(function* () {
      yield* migrate()
      const queue = yield* Queue
      const id = yield* queue.enqueue({
        prompt: args.prompt,
        repoUrl: Option.getOrNull(args.repo),
        branch: args.branch,
        config: Option.getOrNull(args.config),
        metadata: Option.getOrNull(args.metadata),
        idempotencyKey: Option.getOrUndefined(args.key)
      })
      yield* Console.log(id)
    }).pipe(Effect.provide(Queue.layer.pipe(Layer.provideMerge(Database.layer))))
).pipe(Command.withDescription("Insert a request into orchestration_requests and print its id."))

const validate = Command.make("validate", { file: Args.file({ name: "file", exists: "yes" }) }, ({ file }) =>
  reportInvalid(
    Effect.gen(function* () {
      const compiled = yield* load(file)
      yield* Console.log(JSON.stringify(describePipeline(compiled), null, 2))
    })
  ).pipe(Effect.provide(RegistryLive))
).pipe(Command.withDescription("Check a pipeline file; print its problems (exit 1) or the resolved pipeline."))

const schemaCommand = Command.make("schema", {}, () => Console.log(pipelineJsonSchemaText().trimEnd())).pipe(
  Command.withDescription("Print the JSON Schema of the pipeline file (pipeline.schema.json is the committed copy).")
)

const demoCommand = Command.make("demo", {}, () => demo).pipe(
  Command.withDescription(
    "Run one request end to end on the embedded PostgreSQL with the real Claude Code CLI (the model is scripted unless ANTHROPIC_API_KEY is set)."
  )
)

const stageline = Command.make("stageline").pipe(
  Command.withDescription("A declarative pipeline runner for coding agents on PostgreSQL."),
  Command.withSubcommands([
    demoCommand,
    run,
    migrateCommand,
    enqueue,
    Admin.status,
    Admin.results,
    Admin.retry,
    Admin.cancel,
    Admin.releaseStale,
    logs,
    validate,
    schemaCommand
  ])
)

export const cli = Command.run(stageline, { name: "stageline", version })
