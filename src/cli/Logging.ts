/**
 * Logs go to stderr, so stdout carries only what a command prints (a table, an id). Readable lines on a
 * terminal, JSON lines elsewhere (containers, CI); `LOG_FORMAT` (pretty | json | logfmt) and `LOG_LEVEL`
 * (debug | info | warning | error | none) override.
 */
import { Config, Effect, Layer, Logger, LogLevel } from "effect"

const format = Config.literal(
  "pretty",
  "json",
  "logfmt"
)("LOG_FORMAT").pipe(Config.withDefault(process.stderr.isTTY ? ("pretty" as const) : ("json" as const)))

const level = Config.literal(
  "debug",
  "info",
  "warning",
  "error",
  "none"
)("LOG_LEVEL").pipe(Config.withDefault("info" as const))

const levels = {
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  none: LogLevel.None
} as const

export const layer = Layer.unwrapEffect(
  Effect.gen(function* () {
    const chosen = yield* format
    const logger =
      chosen === "pretty"
        ? Logger.prettyLogger({ stderr: true, colors: "auto" })
        : Logger.withConsoleError(chosen === "json" ? Logger.jsonLogger : Logger.logfmtLogger)
    return Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(levels[yield* level]))
  })
)
