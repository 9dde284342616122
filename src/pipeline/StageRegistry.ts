/**
 * The stages a pipeline file can name. Built-in stages register here exactly as plugins do: through
 * `StageRegistry.stages(...)`, a layer that adds them. A name registered twice is an error, so a plugin
 * cannot silently replace a built-in.
 */
import { Context, Data, Effect, Layer } from "effect"
import type { AnyStage } from "./Stage.js"

/** The origin of the stages that come with stageline, as their errors and the result rows name it. */
export const builtinOrigin = "stageline (built-in)"

export class DuplicateStage extends Data.TaggedError("DuplicateStage")<{
  readonly name: string
  readonly message: string
}> {}

export interface Registry {
  readonly register: (stage: AnyStage, origin: string) => Effect.Effect<void, DuplicateStage>
  readonly get: (name: string) => AnyStage | undefined
  readonly origin: (name: string) => string | undefined
  readonly names: () => ReadonlyArray<string>
}

export class StageRegistry extends Context.Tag("stageline/StageRegistry")<StageRegistry, Registry>() {
  static readonly make = Effect.sync((): Registry => {
    const stages = new Map<string, { stage: AnyStage; origin: string }>()
    return {
      register: (stage, origin) =>
        Effect.suspend(() => {
          const existing = stages.get(stage.name)
          if (existing) {
            return Effect.fail(
              new DuplicateStage({
                name: stage.name,
                message: `stage "${stage.name}" from ${origin} is already registered by ${existing.origin}`
              })
            )
          }
          stages.set(stage.name, { stage, origin })
          return Effect.void
        }),
      get: (name) => stages.get(name)?.stage,
      origin: (name) => stages.get(name)?.origin,
      names: () => [...stages.keys()].sort()
    }
  })

  /** An empty registry. */
  static readonly layer = Layer.effect(StageRegistry, StageRegistry.make)

  /** Adds stages to the registry; what built-ins and plugin layers use alike. */
  static readonly stages = (origin: string, stages: ReadonlyArray<AnyStage>) =>
    Layer.effectDiscard(
      Effect.flatMap(StageRegistry, (registry) => Effect.forEach(stages, (stage) => registry.register(stage, origin)))
    )
}
