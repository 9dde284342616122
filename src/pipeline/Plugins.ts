/**
 * Loading the plugins a pipeline file names. A plugin is a module, named by a path relative to the file or
 * by a package name, whose default export is a stage (made with `Stage.make`, exactly like the built-ins),
 * an array of stages, or a Layer that registers stages (`StageRegistry.stages(...)`).
 */
import { createRequire } from "node:module"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { Cause, Effect, Layer } from "effect"
import { type AnyStage, isStage } from "./Stage.js"
import { StageRegistry } from "./StageRegistry.js"

/** Why a plugin could not be used; the compiler turns it into a problem at the plugin's line. */
export interface PluginProblem {
  readonly index: number
  readonly message: string
}

const specifierUrl = (spec: string, dir: string): string => {
  if (spec.startsWith(".") || path.isAbsolute(spec)) return pathToFileURL(path.resolve(dir, spec)).href
  // A package is looked up from the pipeline's folder, as Node would from a file there.
  try {
    return pathToFileURL(createRequire(path.join(dir, "noop.js")).resolve(spec)).href
  } catch {
    return spec
  }
}

const typeScriptFile = /\.[cm]?ts$/

const describeError = (error: unknown): string =>
  error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error)

/**
 * A .ts plugin outside any package that says `"type": "module"` is compiled as CommonJS, and its imports of
 * stageline then fail with Node's require(esm) errors, which do not say that.
 */
const moduleHint = (error: unknown, spec: string) =>
  typeScriptFile.test(spec) === false || !/require\(\)|ERR_REQUIRE|ES Module/i.test(describeError(error))
    ? ""
    : ' (a .ts plugin is loaded as CommonJS unless a package.json beside it or above it says "type": "module", or it is named .mts)'

/**
 * The compiled engine loads TypeScript plugins through tsx, registered at the first one: its loader thread
 * costs a worker about 15 MB that a pipeline without them does not pay. Run from its own sources, the engine
 * is itself loaded by something that compiles TypeScript (tsx, vitest), and that loads plugins too.
 */
let loadsTypeScript = import.meta.url.endsWith(".ts")

const readyFor = (url: string) =>
  loadsTypeScript || !typeScriptFile.test(new URL(url, "file:///").pathname)
    ? Effect.void
    : Effect.promise(async () => {
        const { register } = await import("tsx/esm/api")
        register()
        loadsTypeScript = true
      })

/** Imports each plugin and registers its stages; returns what went wrong, plugin by plugin. */
export const loadPlugins = (specs: ReadonlyArray<string>, dir: string) =>
  Effect.gen(function* () {
    const registry = yield* StageRegistry
    const problems: Array<PluginProblem> = []
    for (const [index, spec] of specs.entries()) {
      const origin = `plugin ${spec}`
      const url = specifierUrl(spec, dir)
      yield* readyFor(url)
      const loaded = yield* Effect.tryPromise(() => import(url)).pipe(Effect.either)
      if (loaded._tag === "Left") {
        problems.push({
          index,
          message: `cannot load plugin "${spec}": ${describeError(loaded.left.error)}${moduleHint(loaded.left.error, spec)}`
        })
        continue
      }
      const exported = (loaded.right as { default?: unknown }).default
      const registered = yield* (
        isStage(exported)
          ? registry.register(exported, origin)
          : Array.isArray(exported) && exported.length > 0 && exported.every(isStage)
            ? Effect.forEach(exported as Array<AnyStage>, (stage) => registry.register(stage, origin), {
                discard: true
              })
            : Layer.isLayer(exported)
              ? Effect.scoped(
                  Layer.build(
                    (exported as Layer.Layer<never, unknown, StageRegistry>).pipe(
                      // Whatever the layer calls itself, its stages are this plugin's.
                      Layer.provide(
                        Layer.succeed(StageRegistry, {
                          ...registry,
                          register: (stage) => registry.register(stage, origin)
                        })
                      )
                    )
                  )
                ).pipe(
                  Effect.asVoid,
                  Effect.catchAllCause((cause) =>
                    Effect.fail({
                      message: `plugin "${spec}" failed to register its stages: ${describeError(Cause.squash(cause))}`
                    })
                  )
                )
              : Effect.fail({
                  message: `plugin "${spec}" must export by default a stage (Stage.make), an array of stages, or a Layer adding stages`
                })
      ).pipe(Effect.either)
      if (registered._tag === "Left") problems.push({ index, message: registered.left.message })
    }
    return problems
  })
