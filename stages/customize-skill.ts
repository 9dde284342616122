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
import { pathExists } from "../src/fs/Files.js"
import { inPackage, packageRoot } from "../src/fs/PackageRoot.js"
import * as Stage from "../src/pipeline/Stage.js"
import { decodeRequestConfig } from "../src/queue/RequestConfig.js"

export class SkillError extends Data.TaggedError("SkillError")<{
  readonly reason: "unknown-skill" | "unknown-domain" | "bad-name" | "io"
  readonly message: string
  readonly cause?: unknown
}> {}

export const bundledSkillsDir = inPackage("skills")
export const bundledDomainsDir = inPackage("domains")

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

/**
 * Writes like writeAtomically, unless the file already holds exactly this content: the same domain files
 * are overlaid on every request, and a read is cheaper than a write and a rename (and leaves the file alone
 * for the agents reading it).
 */
const writeIfChanged = (file: string, content: Uint8Array | string) =>
  Effect.flatMap(
    Effect.promise(() => fs.readFile(file).catch(() => null)),
    (current) =>
      current?.equals(typeof content === "string" ? Buffer.from(content) : content)
        ? Effect.void
        : writeAtomically(file, content)
  )

/** What writeAtomically and installSkill leave while they write: never read as content. */
const isStaging = (name: string) => name.endsWith(".tmp")

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
            ? `no bundled domain "${entry}" (there is no ${path.relative(packageRoot, source)})`
            : `cannot read domain file ${source}`,
          cause
        })
    })
    return { name, content }
  })

/** Installs the skill from `from` (a pipeline's own skill folder), else the one stageline bundles. */
const installSkill = (skill: string, skillDir: string, from: string | undefined) =>
  Effect.gen(function* () {
    const source = from ?? path.join(bundledSkillsDir, skill)
    const exists = yield* pathExists(path.join(source, "SKILL.md"))
    if (!exists) {
      return yield* new SkillError({
        reason: "unknown-skill",
        message:
          from === undefined
            ? `the agent has no skill "${skill}" in ${path.dirname(skillDir)} and stageline bundles none of that name`
            : `the skill folder ${from} (skill_source) has no SKILL.md`
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

/** Writes domain files into a skill's `references/domains/`, refusing a folder that links out of the skill. */
const writeDomains = (skillDir: string, domains: ReadonlyArray<{ name: string; content: Uint8Array | string }>) =>
  Effect.gen(function* () {
    if (domains.length === 0) return
    const domainsDir = path.join(skillDir, "references", "domains")
    yield* Effect.tryPromise({
      try: () => fs.mkdir(domainsDir, { recursive: true }),
      catch: io(`cannot create ${domainsDir}`)
    })
    const [realSkill, realDomains] = yield* Effect.tryPromise({
      try: () => Promise.all([fs.realpath(skillDir), fs.realpath(domainsDir)]),
      catch: io(`cannot resolve ${domainsDir}`)
    })
    if (realDomains !== path.join(realSkill, "references", "domains")) {
      return yield* new SkillError({
        reason: "bad-name",
        message: `${domainsDir} is a link leading out of the skill (to ${realDomains}); refusing to write into it`
      })
    }
    yield* Effect.forEach(domains, (d) => writeIfChanged(path.join(domainsDir, d.name), d.content), { discard: true })
  })

/**
 * A config dir of the request's own: every entry of the shared one linked in, except the skill, which is
 * copied so the request's overlays land in the copy. Credentials and settings still apply; other requests
 * never see these files.
 */
const privateConfigDir = (shared: string, target: string, skill: string) =>
  Effect.tryPromise({
    try: async () => {
      await fs.mkdir(path.join(target, "skills"), { recursive: true })
      for (const entry of await fs.readdir(shared).catch(() => [] as Array<string>)) {
        if (entry !== "skills") await fs.symlink(path.join(shared, entry), path.join(target, entry))
      }
      for (const entry of await fs.readdir(path.join(shared, "skills")).catch(() => [] as Array<string>)) {
        if (entry !== skill && !isStaging(entry)) {
          await fs.symlink(path.join(shared, "skills", entry), path.join(target, "skills", entry))
        }
      }
      // Links inside the skill are copied as links, and writes are checked against leading out. Files that
      // another run is writing at this moment (their .tmp before the rename) are not copied half-written.
      await fs.cp(path.join(shared, "skills", skill), path.join(target, "skills", skill), {
        recursive: true,
        verbatimSymlinks: true,
        filter: (source) => !isStaging(source)
      })
    },
    catch: io(`cannot make the request's own config dir in ${target}`)
  })

/**
 * The pipeline's project context as the workspace's CLAUDE.md (or .claude/CLAUDE.md when the repository has
 * its own), listed in .git/info/exclude so an agent's `git add -A` does not commit it.
 */
const placeProjectContext = (source: string, workspace: string) =>
  Effect.tryPromise({
    try: async () => {
      const content = await fs.readFile(source)
      const exists = (p: string) =>
        fs.lstat(p).then(
          () => true,
          () => false
        )
      const target = !(await exists(path.join(workspace, "CLAUDE.md")))
        ? "CLAUDE.md"
        : !(await exists(path.join(workspace, ".claude", "CLAUDE.md")))
          ? path.join(".claude", "CLAUDE.md")
          : null
      if (target === null) return
      await fs.mkdir(path.dirname(path.join(workspace, target)), { recursive: true })
      await fs.writeFile(path.join(workspace, target), content, { flag: "wx" })
      if (await exists(path.join(workspace, ".git", "info"))) {
        await fs.appendFile(path.join(workspace, ".git", "info", "exclude"), `\n/${target}\n`)
      }
    },
    catch: io(`cannot place the project context ${source}`)
  })

export default Stage.make({
  name: "customize-skill",
  description: "Installs the bundled skill when absent, removes .cc-mirror-managed, overlays domain files.",
  options: Schema.Struct({
    skill: Schema.optionalWith(SkillName, { default: () => "orchestration" }),
    domains: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] }).annotations({
      description: "Domain files: bundled names (code-review) or paths relative to the pipeline file."
    }),
    skill_source: Schema.optional(Schema.String).annotations({
      description:
        "A skill folder (relative to the pipeline file) installed when the agent lacks the skill, instead of a bundled one."
    }),
    skill_md: Schema.optional(Schema.String).annotations({
      description: "A SKILL.md (relative to the pipeline file) that replaces the skill's own."
    }),
    project_context: Schema.optional(Schema.String).annotations({
      description:
        "A CLAUDE.md (relative to the pipeline file) placed in the workspace as project context; kept out of the agent's commits."
    })
  }),
  requires: ["request", "workspace"],
  provides: ["skill"],
  run: (options) => (input) =>
    Effect.gen(function* () {
      const agent = yield* AgentSettings
      const location = yield* Stage.PipelineLocation
      const overrides = (yield* decodeRequestConfig(input.request.config)).skill_overrides
      const sharedSkillDir = path.join(agent.configDir, "skills", options.skill)
      const present = yield* pathExists(path.join(sharedSkillDir, "SKILL.md"))
      if (!present) {
        const from = options.skill_source === undefined ? undefined : path.resolve(location.dir, options.skill_source)
        yield* installSkill(options.skill, sharedSkillDir, from)
      }
      yield* Effect.tryPromise({
        try: () => fs.rm(path.join(sharedSkillDir, ".cc-mirror-managed"), { force: true }),
        catch: io("cannot remove .cc-mirror-managed")
      })
      if (options.skill_md) {
        const file = path.resolve(location.dir, options.skill_md)
        const content = yield* Effect.tryPromise({
          try: () => fs.readFile(file),
          catch: io(`cannot read skill_md ${file}`)
        })
        yield* writeIfChanged(path.join(sharedSkillDir, "SKILL.md"), content)
      }
      const pipelineDomains = yield* Effect.forEach(options.domains, (entry) => resolveDomain(entry, location.dir))
      yield* writeDomains(sharedSkillDir, pipelineDomains)
      if (options.project_context)
        yield* placeProjectContext(path.resolve(location.dir, options.project_context), input.workspace.dir)

      const ownDomains = [
        ...(yield* Effect.forEach(overrides?.domains ?? [], (name) => resolveDomain(name, location.dir))),
        ...Object.entries(overrides?.files ?? {}).map(([name, content]) => ({ name, content }))
      ]
      let configDir = agent.configDir
      if (ownDomains.length > 0) {
        configDir = path.join(input.workspace.tmpDir, "agent-config")
        yield* privateConfigDir(agent.configDir, configDir, options.skill)
        yield* writeDomains(path.join(configDir, "skills", options.skill), ownDomains)
      }
      return {
        skill: {
          configDir,
          skill: options.skill,
          skillDir: path.join(configDir, "skills", options.skill),
          installed: !present,
          domains: [...pipelineDomains, ...ownDomains].map((d) => d.name)
        }
      }
    })
})
