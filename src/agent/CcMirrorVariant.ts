/**
 * cc-mirror's wrapper (`~/.local/bin/mclaude`) sets CLAUDE_CONFIG_DIR to its variant's config dir whatever
 * its caller set. A request with a config dir of its own (skill_overrides) would lose it there, so such a
 * run starts the variant's binary directly: the wrapper adds nothing else a headless run needs, and Claude
 * Code applies the `env` of the settings.json it finds in the config dir by itself.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Effect, Option } from "effect"

interface VariantFile {
  readonly name?: unknown
  readonly binDir?: unknown
  readonly binaryPath?: unknown
}

const realpath = (p: string) => Effect.promise(() => fs.realpath(p).catch(() => p))

/**
 * The variant's own binary when `command` is the wrapper of the variant whose config dir is
 * `variantConfigDir` (cc-mirror keeps `variant.json` beside it); none for any other command.
 */
export const variantBinary = (command: string, variantConfigDir: string) =>
  Effect.gen(function* () {
    const file = path.join(path.dirname(variantConfigDir), "variant.json")
    const variant = yield* Effect.promise(() =>
      fs.readFile(file, "utf8").then(
        (text) => JSON.parse(text) as VariantFile,
        () => null
      )
    )
    if (
      variant === null ||
      typeof variant.name !== "string" ||
      typeof variant.binDir !== "string" ||
      typeof variant.binaryPath !== "string"
    ) {
      return Option.none<string>()
    }
    const [wrapper, given] = yield* Effect.all([realpath(path.join(variant.binDir, variant.name)), realpath(command)])
    return wrapper === given ? Option.some(variant.binaryPath) : Option.none<string>()
  })
