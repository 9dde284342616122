/**
 * customize-skill: makes sure the agent sees the skill the pipeline wants, as the seed's images did by hand:
 * installs the bundled skill into the agent's config dir when it is absent, removes cc-mirror's
 * `.cc-mirror-managed` marker (so cc-mirror leaves the customised skill alone), and writes the pipeline's
 * domain files into `references/domains/`. Every write lands by rename, so a concurrent run reading the
 * skill sees the old file or the new one, never half of one.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Data, Effect, Schema } from "effect"
import { AgentSettings } from "../src/agent/AgentSettings.js"
import * as Stage from "../src/pipeline/Stage.js"

export class SkillError extends Data.TaggedError("SkillError")<{
  readonly reason: "unknown-skill" | "unknown-domain" | "bad-name" | "io"
  readonly message: string
  readonly cause?: unknown
}> {}

const root = new URL("..", import.meta.url).pathname
export const bundledSkillsDir = path.join(root, "skills")
export const bundledDomainsDir = path.join(root, "domains")

const SkillName = Schema.String.pipe(
  Schema.pattern(/^[a-z0-9][a-z0-9-]*$/, { message: () => "a skill name is lower-case letters, digits and -" })
)

const io = (message: string) => (cause: unknown) =>
  new SkillError({ reason: "io", message: `${message}: ${cause}`, cause })

const writeAtomically = (file: string, content: Uint8Array | string) =>
  Effect.tryPromise({
    try: async () => {
      const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
      await fs.writeFile(tmp, content)
      await fs.rename(tmp, file)
    },
    catch: io(`cannot write ${file}`)
  })

/** A bundled domain is named bare (`code-review`); anything else is a path relative to the pipeline file. */
const resolveDomain = (entry: string, pipelineDir: string) =>
  Effect.gen(function* () {
    const bundled = /^[a-z0-9][a-z0-9-]*$/.test(entry)
    const source = bundled ? path.join(bundledDomainsDir, `${entry}.md`) : path.resolve(pipelineDir, entry)
    const name = path.basename(source)
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*\.md$/.test(name)) {
      return yield* new SkillError({
        reason: "bad-name",
        message: `domain file "${entry}" must be a .md file with a plain name`
      })
    }
    const content = yield* Effect.tryPromise({
      try: () => fs.readFile(source),
      catch: (cause) =>
        new SkillError({
          reason: "unknown-domain",
          message: bundled
            ? `no bundled domain "${entry}" (there is no ${path.relative(root, source)})`
            : `cannot read domain file ${source}`,
          cause
        })
    })
    return { name, content }
  })

const installBundled = (skill: string, skillDir: string) =>
  Effect.gen(function* () {
    const source = path.join(bundledSkillsDir, skill)
    const exists = yield* Effect.promise(() =>
      fs.stat(path.join(source, "SKILL.md")).then(
        () => true,
        () => false
      )
    )
    if (!exists) {
      return yield* new SkillError({
        reason: "unknown-skill",
        message: `the agent has no skill "${skill}" in ${path.dirname(skillDir)} and stageline bundles none of that name`
      })
    }
    yield* Effect.tryPromise({
      try: async () => {
        await fs.mkdir(path.dirname(skillDir), { recursive: true })
        const staging = `${skillDir}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
        await fs.cp(source, staging, { recursive: true })
        try {
          await fs.rename(staging, skillDir)
        } catch (error) {
          // Another run installed it first: theirs is as good as ours.
          await fs.rm(staging, { recursive: true, force: true })
          if (!["ENOTEMPTY", "EEXIST"].includes((error as NodeJS.ErrnoException).code ?? "")) throw error
        }
      },
      catch: io(`cannot install the skill into ${skillDir}`)
    })
  })

export default Stage.make({
  name: "customize-skill",
  description: "Installs the bundled skill when absent, removes .cc-mirror-managed, overlays domain files.",
  options: Schema.Struct({
    skill: Schema.optionalWith(SkillName, { default: () => "orchestration" }),
    domains: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] })
  }),
  requires: ["request"],
  provides: ["skill"],
  run: (options) => () =>
    Effect.gen(function* () {
      const agent = yield* AgentSettings
      const location = yield* Stage.PipelineLocation
      const skillDir = path.join(agent.configDir, "skills", options.skill)
      const present = yield* Effect.promise(() =>
        fs.stat(path.join(skillDir, "SKILL.md")).then(
          () => true,
          () => false
        )
      )
      if (!present) yield* installBundled(options.skill, skillDir)
      yield* Effect.tryPromise({
        try: () => fs.rm(path.join(skillDir, ".cc-mirror-managed"), { force: true }),
        catch: io("cannot remove .cc-mirror-managed")
      })
      const domainsDir = path.join(skillDir, "references", "domains")
      const domains = yield* Effect.forEach(options.domains, (entry) => resolveDomain(entry, location.dir))
      if (domains.length > 0) {
        yield* Effect.tryPromise({
          try: () => fs.mkdir(domainsDir, { recursive: true }),
          catch: io(`cannot create ${domainsDir}`)
        })
      }
      yield* Effect.forEach(domains, (d) => writeAtomically(path.join(domainsDir, d.name), d.content), {
        discard: true
      })
      return {
        skill: {
          configDir: agent.configDir,
          skill: options.skill,
          skillDir,
          installed: !present,
          domains: domains.map((d) => d.name)
        }
      }
    })
})
