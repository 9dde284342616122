/**
 * The stage contract. Every stage, built in or plugin, is a value made with `Stage.make`:
 *
 * - `name`: how a pipeline file refers to it;
 * - `options`: a Schema decoded from the stage's `with:` block when the pipeline is loaded, so a bad
 *   option is an error before any request is claimed;
 * - `requires` / `provides`: the run-context keys it reads and adds (checked at load, and at run time
 *   that it really returned what it promised);
 * - `run(options)`: returns the function from the run context to an Effect yielding the new fields.
 *
 * Guarantees and duties:
 * - A stage may be interrupted at any point (its timeout, a cancel, a shutdown). Whatever it opens must be
 *   scoped (`Effect.acquireRelease`, `Effect.addFinalizer`) so interruption releases it. The `Scope` a
 *   stage receives lives as long as the request, so a resource the next stages need (a workspace) is
 *   released when the request ends, not when the stage does.
 * - A stage fails with a tagged error (`Data.TaggedError`); the tag is what `retry.retry_on` names and what
 *   the result row reports. A thrown exception or a defect fails the request with the stage named, never
 *   the worker.
 * - Requests are delivered at least once: a stage may meet a request again after a crash.
 */

import type { CommandExecutor } from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import type { SqlClient } from "@effect/sql/SqlClient"
import { Context, type Effect, Schema, type Scope } from "effect"
import type { AgentSettings } from "../agent/AgentSettings.js"
import type { WorkerConfig } from "../config/WorkerConfig.js"
import type { Leases } from "../queue/Lease.js"
import type { Queue } from "../queue/Queue.js"
import type { Recorder } from "../queue/Recorder.js"
import type { Wakeups } from "../queue/Wakeups.js"
import type { Lifecycle } from "../worker/Lifecycle.js"
import type { ContextKey, StageInput, StageOutput } from "./RunContext.js"

/** The services the engine gives every stage, built-in or plugin alike. */
export type StageServices =
  | SqlClient
  | Queue
  | Recorder
  | Leases
  | Wakeups
  | FileSystem.FileSystem
  | Path.Path
  | CommandExecutor
  | WorkerConfig
  | AgentSettings
  | Lifecycle
  | PipelineLocation
  | Scope.Scope

/** Where the pipeline file is, so stages can resolve paths written in it relative to it. */
export class PipelineLocation extends Context.Tag("stageline/PipelineLocation")<
  PipelineLocation,
  { readonly file: string; readonly dir: string }
>() {}

export interface Stage<
  Options = unknown,
  Requires extends ContextKey = ContextKey,
  Provides extends ContextKey = ContextKey,
  E extends { readonly _tag: string } = { readonly _tag: string },
  R extends StageServices = StageServices
> {
  readonly name: string
  readonly description: string
  // biome-ignore lint/suspicious/noExplicitAny: the encoded side is whatever the pipeline file holds
  readonly options: Schema.Schema<Options, any, never>
  readonly requires: ReadonlyArray<Requires>
  readonly provides: ReadonlyArray<Provides>
  /** Runs even when an earlier stage failed (record and clean-up do). */
  readonly runsAfterFailure: boolean
  readonly run: (options: Options) => (input: StageInput<Requires>) => Effect.Effect<StageOutput<Provides>, E, R>
}

/** Any stage, whatever its options and keys: what the registry and the runner hold. */
export interface AnyStage {
  readonly name: string
  readonly description: string
  // biome-ignore lint/suspicious/noExplicitAny: a registry holds stages of every option type
  readonly options: Schema.Schema<any, any, never>
  readonly requires: ReadonlyArray<ContextKey>
  readonly provides: ReadonlyArray<ContextKey>
  readonly runsAfterFailure: boolean
  // biome-ignore lint/suspicious/noExplicitAny: checked at load (options) and at run time (the context keys)
  readonly run: (options: any) => (input: any) => Effect.Effect<object, { readonly _tag: string }, StageServices>
}

export const make = <
  const Requires extends ContextKey,
  const Provides extends ContextKey,
  Options,
  E extends { readonly _tag: string },
  R extends StageServices
>(definition: {
  readonly name: string
  readonly description: string
  // biome-ignore lint/suspicious/noExplicitAny: the encoded side is whatever the pipeline file holds
  readonly options: Schema.Schema<Options, any, never>
  readonly requires: ReadonlyArray<Requires>
  readonly provides: ReadonlyArray<Provides>
  readonly runsAfterFailure?: boolean
  readonly run: (options: Options) => (input: StageInput<Requires>) => Effect.Effect<StageOutput<Provides>, E, R>
}): Stage<Options, Requires, Provides, E, R> => ({ runsAfterFailure: false, ...definition })

/** Whether a value has the shape of a stage (for plugins, whose default export is checked). */
export const isStage = (u: unknown): u is AnyStage => {
  const s = u as Partial<AnyStage> | null
  return (
    typeof s === "object" &&
    s !== null &&
    typeof s.name === "string" &&
    typeof s.run === "function" &&
    Array.isArray(s.requires) &&
    Array.isArray(s.provides) &&
    Schema.isSchema(s.options)
  )
}
