/**
 * Loads a pipeline file and turns it into a `CompiledPipeline`: every stage found in the registry, its
 * options decoded, its requirements met by an earlier stage. Whatever is wrong is reported at once, each
 * problem with the file, line, stage and field it concerns, before any request is claimed.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Data, Effect, Either, Schema } from "effect"
import { LineCounter, type Node, parseDocument } from "yaml"
import type { FileSettings } from "../config/WorkerConfig.js"
import {
  type AgentSection,
  PipelineShape,
  type QueueSection,
  type Retry,
  type StageEntry,
  StageEntryOrName,
  type When,
  type WorkspaceSection
} from "./PipelineFile.js"
import { loadPlugins } from "./Plugins.js"
import type { ContextKey } from "./RunContext.js"
import { pathToField, relevantIssues } from "./SchemaIssues.js"
import type { AnyStage } from "./Stage.js"
import { StageRegistry } from "./StageRegistry.js"

export interface PipelineProblem {
  readonly file: string
  readonly line: number | null
  readonly stage: string | null
  readonly field: string | null
  readonly message: string
}

export const formatProblem = (p: PipelineProblem): string =>
  `${p.file}${p.line === null ? "" : `:${p.line}`}: ${p.stage === null ? "" : `stage "${p.stage}": `}${
    p.field === null ? "" : `${p.field}: `
  }${p.message}`

export class PipelineInvalid extends Data.TaggedError("PipelineInvalid")<{
  readonly file: string
  readonly problems: ReadonlyArray<PipelineProblem>
}> {
  override get message() {
    return `pipeline ${this.file} is invalid:\n${this.problems.map((p) => `  ${formatProblem(p)}`).join("\n")}`
  }
}

export interface CompiledStage {
  /** Unique in the pipeline: the entry's `id`, or the stage's name. */
  readonly id: string
  readonly stage: AnyStage
  /** Where the stage comes from: built in, or which plugin; named in its errors. */
  readonly origin: string
  readonly when: When | null
  readonly options: unknown
  readonly timeoutMs: number | null
  readonly retry: Retry | null
  readonly runsAfterFailure: boolean
}

export interface CompiledPipeline {
  readonly name: string
  readonly file: string
  readonly dir: string
  readonly agent: AgentSection
  /** The file's queue, workspace and agent-timeout settings (the environment still wins over them). */
  readonly settings: FileSettings
  readonly stages: ReadonlyArray<CompiledStage>
}

/** Stages from plugins get this limit unless the pipeline sets one: a plugin that hangs fails its request. */
export const pluginDefaultTimeoutMs = 10 * 60_000

/** The keys every run has before its first stage. */
const engineProvided: ReadonlyArray<ContextKey> = ["run"]

const strict = { onExcessProperty: "error", errors: "all" } as const
const decodeShape = Schema.decodeUnknownEither(PipelineShape, strict)
const decodeEntry = Schema.decodeUnknownEither(StageEntryOrName, strict)

export const compile = (file: string, text: string) =>
  Effect.gen(function* () {
    const registry = yield* StageRegistry
    const lineCounter = new LineCounter()
    const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
    const problems: Array<PipelineProblem> = []
    const lineOf = (at: ReadonlyArray<PropertyKey>): number | null => {
      // The deepest node that exists on the path: a missing field is reported where its parent is.
      for (let n = at.length; n >= 0; n--) {
        const node = doc.getIn(at.slice(0, n) as Array<unknown>, true) as Node | undefined
        if (node && typeof node === "object" && "range" in node && node.range) {
          return lineCounter.linePos(node.range[0]).line
        }
      }
      return null
    }
    const fail = () =>
      Effect.fail(new PipelineInvalid({ file, problems: [...problems].sort((a, b) => (a.line ?? 0) - (b.line ?? 0)) }))

    for (const error of doc.errors) {
      problems.push({
        file,
        line: lineCounter.linePos(error.pos[0]).line,
        stage: null,
        field: null,
        message: error.message.split("\n")[0] ?? error.message
      })
    }
    if (problems.length > 0) return yield* fail()

    const raw = doc.toJS()
    const stageNameAt = (index: number): string | null => {
      const entry = (raw as { stages?: Array<unknown> })?.stages?.[index]
      if (typeof entry === "string") return entry
      if (entry && typeof entry === "object") {
        const e = entry as { id?: unknown; use?: unknown }
        if (typeof e.id === "string") return e.id
        if (typeof e.use === "string") return e.use
      }
      return null
    }

    const decoded = decodeShape(raw)
    if (Either.isLeft(decoded)) {
      for (const issue of relevantIssues(decoded.left)) {
        problems.push({
          file,
          line: lineOf(issue.path),
          stage: null,
          field: pathToField(issue.path) || null,
          message: issue.message
        })
      }
      return yield* fail()
    }
    const pipeline = decoded.right
    const dir = path.dirname(file)
    for (const problem of yield* loadPlugins(pipeline.plugins ?? [], dir)) {
      problems.push({
        file,
        line: lineOf(["plugins", problem.index]),
        stage: null,
        field: `plugins[${problem.index}]`,
        message: problem.message
      })
    }
    const entries: Array<StageEntry | null> = pipeline.stages.map((rawEntry, index) => {
      const entry = decodeEntry(rawEntry)
      if (Either.isRight(entry)) return typeof entry.right === "string" ? { use: entry.right } : entry.right
      for (const issue of relevantIssues(entry.left)) {
        // The entry is an object, so the complaint that it is not a string says nothing.
        if (issue.path.length === 0 && issue.message.startsWith("Expected string")) continue
        problems.push({
          file,
          line: lineOf(["stages", index, ...issue.path]),
          stage: stageNameAt(index),
          field: pathToField(issue.path) || null,
          message: issue.message
        })
      }
      return null
    })

    const compiled: Array<CompiledStage> = []
    const provided = new Map<string, string>(engineProvided.map((k) => [k, "the engine"]))
    const seen = new Set<string>()
    for (const [index, entry] of entries.entries()) {
      if (entry === null) {
        // Reported already; what it would provide still counts, so later stages are not blamed for it.
        const raw = pipeline.stages[index] as { use?: unknown } | string
        const name = typeof raw === "string" ? raw : raw?.use
        for (const key of (typeof name === "string" ? registry.get(name)?.provides : undefined) ?? []) {
          if (!provided.has(key)) provided.set(key, name as string)
        }
        continue
      }
      const rawEntry = pipeline.stages[index]
      const id = entry.id ?? entry.use
      const at = (field: string | null, sub: ReadonlyArray<PropertyKey> = []) => ({
        file,
        line: lineOf(["stages", index, ...sub]),
        stage: id,
        field
      })
      if (seen.has(id)) {
        problems.push({ ...at(entry.id ? "id" : "use", [entry.id ? "id" : "use"]), message: duplicateMessage(id) })
        continue
      }
      seen.add(id)
      const stage = registry.get(entry.use)
      if (!stage) {
        problems.push({
          ...at("use", typeof rawEntry === "string" ? [] : ["use"]),
          message: `unknown stage "${entry.use}"; known stages: ${registry.names().join(", ")}`
        })
        continue
      }
      const options = Schema.decodeUnknownEither(stage.options, strict)(entry.with ?? {})
      if (Either.isLeft(options)) {
        for (const issue of relevantIssues(options.left)) {
          const field = pathToField(["with", ...issue.path])
          problems.push({ ...at(field, ["with", ...issue.path]), message: issue.message })
        }
        continue
      }
      for (const key of stage.requires) {
        if (!provided.has(key)) {
          const later = entries
            .slice(index + 1)
            .map((e) => e?.use)
            .find((name) => name !== undefined && registry.get(name)?.provides.includes(key as ContextKey))
          problems.push({
            ...at("requires"),
            message: `needs "${key}", which no earlier stage provides${
              later ? ` ("${later}" provides it, but runs later: move it before "${id}")` : ""
            }`
          })
        }
      }
      if (index === 0 && !stage.provides.includes("request")) {
        problems.push({
          ...at(null),
          message: `the first stage must claim a request (provide "request"), as "claim" does`
        })
      }
      if (entry.when) {
        const target = whenPath(entry.when)
        const key = target.split(".")[0]!
        if (!provided.has(key)) {
          problems.push({
            ...at("when", ["when"]),
            message: `tests "${target}", but no earlier stage provides "${key}"`
          })
        }
      }
      for (const key of stage.provides) if (!provided.has(key)) provided.set(key, id)
      const origin = registry.origin(entry.use) ?? "unknown"
      const isPlugin = origin.startsWith("plugin ")
      compiled.push({
        id,
        stage,
        origin,
        when: entry.when ?? null,
        options: options.right,
        timeoutMs: entry.timeout ?? (isPlugin ? pluginDefaultTimeoutMs : null),
        retry: entry.retry ?? null,
        runsAfterFailure: entry.after_failure ?? stage.runsAfterFailure
      })
    }
    if (problems.length > 0) return yield* fail()
    return {
      name: pipeline.name,
      file,
      dir,
      agent: pipeline.agent,
      settings: fileSettings(pipeline, dir),
      stages: compiled
    } satisfies CompiledPipeline
  })

const whenPath = (when: When): string =>
  "exists" in when
    ? when.exists
    : "missing" in when
      ? when.missing
      : "equals" in when
        ? when.equals.path
        : when.not_equals.path

const fileSettings = (
  pipeline: { queue: QueueSection; workspace: WorkspaceSection; agent: AgentSection },
  dir: string
): FileSettings => ({
  ...(pipeline.queue.concurrency === undefined ? {} : { workerCount: pipeline.queue.concurrency }),
  ...(pipeline.queue.poll_interval === undefined ? {} : { pollIntervalMs: pipeline.queue.poll_interval }),
  ...(pipeline.queue.shutdown_grace === undefined ? {} : { shutdownGraceMs: pipeline.queue.shutdown_grace }),
  ...(pipeline.queue.lease === undefined ? {} : { leaseMs: pipeline.queue.lease }),
  ...(pipeline.queue.max_attempts === undefined ? {} : { maxAttempts: pipeline.queue.max_attempts }),
  ...(pipeline.queue.retry_on === undefined ? {} : { retryOn: pipeline.queue.retry_on }),
  ...(pipeline.queue.retry_backoff === undefined ? {} : { retryBackoffMs: pipeline.queue.retry_backoff }),
  ...(pipeline.workspace.base === undefined ? {} : { workspaceBase: path.resolve(dir, pipeline.workspace.base) }),
  ...(pipeline.workspace.cleanup === undefined ? {} : { cleanupAfterComplete: pipeline.workspace.cleanup }),
  ...(pipeline.agent.timeout === undefined ? {} : { agentTimeoutMs: pipeline.agent.timeout })
})

const duplicateMessage = (id: string) => `the name "${id}" is used twice; give one of them an \`id\` of its own`

/** Reads and compiles a pipeline file. */
export const load = (file: string) =>
  Effect.gen(function* () {
    const absolute = path.resolve(file)
    const text = yield* Effect.tryPromise({
      try: () => fs.readFile(absolute, "utf8"),
      catch: (cause) =>
        new PipelineInvalid({
          file: absolute,
          problems: [
            {
              file: absolute,
              line: null,
              stage: null,
              field: null,
              message: `cannot read the pipeline file: ${(cause as Error).message}`
            }
          ]
        })
    })
    return yield* compile(absolute, text)
  })

/** A plain view of the compiled pipeline, for `stageline validate`. */
export const describePipeline = (pipeline: CompiledPipeline) => ({
  name: pipeline.name,
  file: pipeline.file,
  agent: pipeline.agent,
  settings: pipeline.settings,
  stages: pipeline.stages.map((s) => ({
    id: s.id,
    use: s.stage.name,
    origin: s.origin,
    when: s.when,
    requires: s.stage.requires,
    provides: s.stage.provides,
    options: s.options,
    timeout_ms: s.timeoutMs,
    retry: s.retry,
    after_failure: s.runsAfterFailure
  }))
})
