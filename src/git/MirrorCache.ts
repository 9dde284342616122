/**
 * A cache of bare mirrors, one per repository URL, so a repository seen before is fetched rather than
 * cloned again, and a workspace is made from the mirror by a local clone (hard links, no network).
 *
 * Updating a mirror takes a lock (a directory created atomically, holding its owner's pid); a lock whose
 * owner is dead is broken, so a killed worker never wedges the cache. Cloning from a mirror needs no lock:
 * a fetch only adds objects and moves refs atomically.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Effect } from "effect"
import { GitError, git } from "./Git.js"

export const mirrorPath = (cacheDir: string, repoUrl: string) =>
  path.join(cacheDir, `${createHash("sha256").update(repoUrl).digest("hex").slice(0, 32)}.git`)

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Holds `lockDir` for the scope: waits for a live holder (up to `waitMs`), breaks a dead one's. */
const lock = (lockDir: string, waitMs: number) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const deadline = Date.now() + waitMs
      while (true) {
        const taken = yield* Effect.promise(() =>
          fs.mkdir(lockDir).then(
            () => true,
            () => false
          )
        )
        if (taken) {
          yield* Effect.promise(() => fs.writeFile(path.join(lockDir, "owner"), String(process.pid)))
          return
        }
        const owner = yield* Effect.promise(() => fs.readFile(path.join(lockDir, "owner"), "utf8").catch(() => ""))
        if (owner !== "" && !alive(Number(owner))) {
          yield* Effect.logWarning(`breaking the lock ${lockDir} of process ${owner}, which is gone`)
          yield* Effect.promise(() => fs.rm(lockDir, { recursive: true, force: true }))
          continue
        }
        if (Date.now() > deadline) {
          return yield* new GitError({
            operation: "mirror",
            message: `the mirror lock ${lockDir} stayed taken for ${waitMs} ms`
          })
        }
        yield* Effect.sleep("50 millis")
      }
    }),
    () => Effect.promise(() => fs.rm(lockDir, { recursive: true, force: true }).catch(() => {}))
  )

export interface MirrorOptions {
  readonly cacheDir: string
  readonly repoUrl: string
  /** Credentials for the fetch (see Credentials.ts). */
  readonly env: Record<string, string>
  readonly unsafe: Parameters<typeof git>[4]
  readonly lockWaitMs: number
}

/** Brings the repository's mirror up to date (creating it the first time) and returns its path. */
export const updateMirror = (options: MirrorOptions) =>
  Effect.scoped(
    Effect.gen(function* () {
      const mirror = mirrorPath(options.cacheDir, options.repoUrl)
      yield* Effect.promise(() => fs.mkdir(options.cacheDir, { recursive: true }))
      yield* lock(`${mirror}.lock`, options.lockWaitMs)
      const exists = yield* Effect.promise(() =>
        fs.stat(path.join(mirror, "HEAD")).then(
          () => true,
          () => false
        )
      )
      if (exists) {
        yield* git(
          mirror,
          "fetch",
          (g) => g.raw(["fetch", "--prune", "--quiet", "origin"]),
          options.env,
          options.unsafe
        )
      } else {
        const staging = `${mirror}.${process.pid}.tmp`
        yield* Effect.promise(() => fs.rm(staging, { recursive: true, force: true }))
        yield* git(
          options.cacheDir,
          "clone",
          (g) => g.clone(options.repoUrl, staging, ["--mirror", "--quiet"]),
          options.env,
          options.unsafe
        )
        yield* Effect.promise(() => fs.rename(staging, mirror))
      }
      return mirror
    })
  )
