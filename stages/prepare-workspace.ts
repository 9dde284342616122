/**
 * prepare-workspace: a fresh directory under `WORKSPACE_BASE` for the request, with `repo_url` cloned into
 * it at `branch` when the request names a repository, empty otherwise. The directory is a resource of the
 * request: removed when the request ends (`CLEANUP_AFTER_COMPLETE`), however it ends.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Effect, Schema } from "effect"
import { WorkerConfig } from "../src/config/WorkerConfig.js"
import { cloneAuth } from "../src/git/Credentials.js"
import { GitError, git } from "../src/git/Git.js"
import { updateMirror } from "../src/git/MirrorCache.js"
import { checkBranch, checkRepoUrl, redactUrl } from "../src/git/RepoUrl.js"
import * as Stage from "../src/pipeline/Stage.js"

const removeQuietly = (dir: string) =>
  Effect.promise(() => fs.rm(dir, { recursive: true, force: true }).catch(() => {}))

/**
 * An empty directory at `dir`: made at once in the usual case (one call); what a crashed earlier run of the
 * same attempt left there is removed first.
 */
const freshDir = async (dir: string, mode?: number) => {
  // mkdir -p names what it made, and nothing when the directory was there already.
  if ((await fs.mkdir(dir, { recursive: true, mode }).catch(() => undefined)) !== undefined) return
  await fs.rm(dir, { recursive: true, force: true })
  await fs.mkdir(dir, { recursive: true, mode })
}

export default Stage.make({
  name: "prepare-workspace",
  description: "Makes the request's workspace: a clone of repo_url at branch, or an empty directory.",
  options: Schema.Struct({
    mirror_cache: Schema.optionalWith(Schema.Boolean, { default: () => true }).annotations({
      description:
        "Keep a bare mirror per repository and make workspaces from it (a fetch, not a clone, for a repository seen before)."
    }),
    mirror_dir: Schema.optional(Schema.String).annotations({
      description: "Where the mirrors live, relative to the pipeline file (default <workspace base>/.mirrors)."
    })
  }),
  requires: ["request"],
  provides: ["workspace"],
  run: (options) => (input) =>
    Effect.gen(function* () {
      const { workspaceBase, cleanupAfterComplete } = yield* WorkerConfig
      const location = yield* Stage.PipelineLocation
      const request = input.request
      const name = `${request.id}-a${request.attempts}`
      const dir = path.join(workspaceBase, name)
      const tmpDir = path.join(workspaceBase, ".tmp", name)

      const repoUrl = request.repo_url?.trim() || null
      const branch = request.branch?.trim() || null
      if (repoUrl !== null) {
        const invalid = checkRepoUrl(repoUrl) ?? (branch === null ? null : checkBranch(branch))
        if (invalid) return yield* invalid
      }

      yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: () => Promise.all([freshDir(dir), freshDir(tmpDir, 0o700)]),
          catch: (cause) =>
            new GitError({ operation: "mkdir", message: `cannot create the workspace ${dir}: ${cause}`, cause })
        }),
        () =>
          Effect.all(
            [
              removeQuietly(tmpDir),
              cleanupAfterComplete ? removeQuietly(dir) : Effect.logInfo(`workspace kept at ${dir}`)
            ],
            { concurrency: 2, discard: true }
          )
      )

      if (repoUrl === null) {
        return { workspace: { dir, tmpDir, repoUrl: null, branch: null, baseSha: null } }
      }
      // Credentials live in a folder of their own, gone as soon as the clone is done: never in the
      // agent's TMPDIR or workspace, where a prompt could read them.
      const secretsDir = yield* Effect.acquireRelease(
        Effect.promise(async () => {
          const dir = path.join(workspaceBase, ".secrets", name)
          await fs.rm(dir, { recursive: true, force: true })
          await fs.mkdir(dir, { recursive: true, mode: 0o700 })
          return dir
        }),
        (dir) => removeQuietly(dir)
      )
      const auth = yield* cloneAuth(repoUrl, secretsDir, path.join(workspaceBase, ".ssh", "known_hosts"))
      yield* Effect.logDebug(
        `cloning ${redactUrl(repoUrl)} (${auth.method === "none" ? "no credentials" : auth.method})`
      )
      const branchArgs = branch === null ? [] : ["--branch", branch, "--single-branch"]
      const clone = options.mirror_cache
        ? Effect.gen(function* () {
            const mirror = yield* updateMirror({
              cacheDir: options.mirror_dir
                ? path.resolve(location.dir, options.mirror_dir)
                : path.join(workspaceBase, ".mirrors"),
              repoUrl,
              env: auth.env,
              unsafe: auth.unsafe,
              lockWaitMs: 10 * 60_000
            })
            // A local clone of the mirror: hard links, no network; then origin is the real remote again.
            yield* git(workspaceBase, "clone", (g) => g.clone(mirror, dir, branchArgs))
            yield* git(dir, "remote", (g) => g.remote(["set-url", "origin", repoUrl]))
          })
        : git(workspaceBase, "clone", (g) => g.clone(repoUrl, dir, branchArgs), auth.env, auth.unsafe)
      yield* clone.pipe(
        Effect.mapError((error) =>
          /Remote branch .* not found/.test(error.message)
            ? new GitError({
                operation: "clone",
                message: `branch "${branch}" does not exist in ${repoUrl}`,
                cause: error.cause
              })
            : error
        )
      )
      yield* removeQuietly(secretsDir)
      const baseSha = yield* git(dir, "rev-parse", (g) => g.revparse(["HEAD"])).pipe(
        Effect.map((sha) => sha.trim()),
        // A repository with no commits yet has no HEAD.
        Effect.orElseSucceed(() => null)
      )
      return { workspace: { dir, tmpDir, repoUrl, branch, baseSha } }
    })
})
