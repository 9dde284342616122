/**
 * Running the real engine in a test: a pipeline file written to a temp dir with the test-double agent as
 * its command, a real git repository to clone, and the worker run with `--once` semantics against the
 * file's own database.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { Effect, identity, Layer, Logger, LogLevel } from "effect"
import { RegistryLive } from "../../src/cli/Cli.js"
import { type FileSettings, resolve, WorkerConfig, type WorkerSettings } from "../../src/config/WorkerConfig.js"
import { load } from "../../src/pipeline/Compiler.js"
import * as Worker from "../../src/worker/Worker.js"

export const fakeAgent = path.join(import.meta.dirname, "..", "fixtures", "fake-agent.mjs")

export const tempDir = (prefix: string) => fs.mkdtempSync(path.join(os.tmpdir(), `stageline-${prefix}-`))

const run = (cwd: string, ...args: Array<string>) =>
  execFileSync("git", args, {
    cwd,
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "T",
      GIT_AUTHOR_EMAIL: "t@example.invalid",
      GIT_COMMITTER_NAME: "T",
      GIT_COMMITTER_EMAIL: "t@example.invalid"
    }
  })
    .toString()
    .trim()

/** A bare repository with one commit on `main` (and any extra branches), as a `file://` URL. */
export const makeBareRepo = (options: { readonly branches?: ReadonlyArray<string> } = {}) => {
  const root = tempDir("repo")
  const work = path.join(root, "work")
  fs.mkdirSync(work)
  run(work, "init", "-q", "-b", "main")
  fs.writeFileSync(path.join(work, "README.md"), "# sample\n")
  run(work, "add", "-A")
  run(work, "commit", "-q", "-m", "initial commit")
  for (const branch of options.branches ?? []) run(work, "branch", branch)
  const bare = path.join(root, "sample.git")
  run(root, "clone", "-q", "--bare", work, bare)
  return { url: `file://${bare}`, path: bare, baseSha: run(work, "rev-parse", "HEAD"), root }
}

export const defaultStages = `
  - claim
  - prepare-workspace
  - use: customize-skill
    with:
      domains: [code-review]
  - execute-mclaude
  - extract-git-artifacts
  - record
`

/** The stages of `defaultStages` (and of the example pipelines) after the claim. */
export const stagesAfterClaim = [
  "prepare-workspace",
  "customize-skill",
  "execute-mclaude",
  "extract-git-artifacts",
  "record"
] as const

/** Writes a pipeline file whose agent is the test double, with a config dir of its own. */
export const writePipeline = (
  options: {
    readonly stages?: string
    readonly command?: string
    readonly agent?: string
    readonly top?: string
    readonly configDir?: string
  } = {}
) => {
  const dir = tempDir("pipeline")
  const file = path.join(dir, "pipeline.yaml")
  fs.writeFileSync(
    file,
    `name: test-pipeline
${options.top ?? ""}
agent:
  command: ${options.command ?? fakeAgent}
  config_dir: ${options.configDir ?? "./agent-config"}
${options.agent ?? ""}
stages:${options.stages ?? defaultStages}`
  )
  return { file, dir, configDir: options.configDir ?? path.join(dir, "agent-config") }
}

/** Worker settings for a test, as the CLI resolves them, then its own workspace base and short polls. */
const testWorkerConfig = (file: FileSettings, overrides: Partial<WorkerSettings>) =>
  Layer.effect(
    WorkerConfig,
    Effect.map(resolve(file), (settings) => ({
      ...settings,
      workspaceBase: tempDir("ws"),
      pollIntervalMs: 200,
      workerCount: 1,
      // One attempt unless a test asks for more, so a failure is final and its row is the only one.
      maxAttempts: 1,
      ...overrides
    }))
  )

/**
 * Loads the pipeline and runs the worker until the queue is empty. Needs SqlClient and DatabaseUrl.
 * Tracing is off, as in a worker with no trace exporter, unless `traced` (a test that provides a tracer).
 */
export const runOnce = (
  pipelineFile: string,
  overrides: Partial<WorkerSettings> = {},
  options: { readonly traced?: boolean } = {}
) => runWorker(pipelineFile, overrides, { once: true, ...options })

/** Loads the pipeline and runs the worker, `once` as `--once` says, else until interrupted (it drains then). */
export const runWorker = (
  pipelineFile: string,
  overrides: Partial<WorkerSettings>,
  options: { readonly once: boolean; readonly traced?: boolean }
) =>
  Effect.gen(function* () {
    const compiled = yield* load(pipelineFile).pipe(Effect.provide(RegistryLive))
    return yield* Worker.run(compiled).pipe(
      Effect.provide(Worker.stageServices(compiled, { once: options.once })),
      Effect.provide(testWorkerConfig(compiled.settings, overrides))
    )
  }).pipe(
    options.traced ? identity : Effect.withTracerEnabled(false),
    Effect.provide(Layer.mergeAll(NodeContext.layer, quiet))
  )

/** Tests log errors only, unless TEST_LOG_LEVEL=debug|info asks for more. */
const quiet = Logger.minimumLogLevel(
  process.env.TEST_LOG_LEVEL === "debug"
    ? LogLevel.Debug
    : process.env.TEST_LOG_LEVEL === "info"
      ? LogLevel.Info
      : LogLevel.Error
)
