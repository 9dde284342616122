/**
 * A cache of bare mirrors, one per repository URL, so a repository seen before is fetched rather than
 * cloned again, and a workspace is made from the mirror by a local clone (hard links, no network).
 *
 * Updating a mirror takes a lock (a directory renamed into place with its owner's pid and start time); a
 * lock whose owner is gone is broken, so a killed worker never wedges the cache, and waiting for a lock
 * can be interrupted (a cancel, a timeout, a shutdown). Cloning from a mirror needs no lock:
 * a fetch only adds objects and moves refs atomically.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Effect } from "effect"
import { pathExists } from "../fs/Files.js"
import { ownerAlive, ownerMark } from "../process/ProcessTree.js"
import { GitError, git } from "./Git.js"

export const mirrorPath = (cacheDir: string, repoUrl: string) =>
  path.join(cacheDir, `${createHash("sha256").update(repoUrl).digest("hex").slice(0, 32)}.git`)

/**
 * One try at the lock. It appears whole or not at all: made aside with its owner file, then renamed into
 * place. A lock whose owner is gone is taken over by renaming it away first, so two waiters cannot both
 * break it.
 */
const tryLock = (lockDir: string) =>
  Effect.promise(async (): Promise<boolean> => {
    const staging = `${lockDir}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
    await fs.mkdir(staging, { recursive: true })
    await fs.writeFile(path.join(staging, "owner"), ownerMark())
    try {
      await fs.rename(staging, lockDir)
      return true
    } catch {
      await fs.rm(staging, { recursive: true, force: true })
    }
    const owner = await fs.readFile(path.join(lockDir, "owner"), "utf8").catch(() => null)
    if (owner !== null && !ownerAlive(owner.trim())) {
      const broken = `${lockDir}.broken.${process.pid}.${Math.random().toString(36).slice(2)}`
      // Only one waiter's rename succeeds; the others simply try again.
      await fs.rename(lockDir, broken).then(
        () => fs.rm(broken, { recursive: true, force: true }),
        () => {}
      )
    }
    return false
  })

/** Holds `lockDir` for the scope, waiting (interruptibly) up to `waitMs` while a live process holds it. */
const lock = (lockDir: string, waitMs: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + waitMs
    const attempt = Effect.uninterruptible(
      Effect.tap(tryLock(lockDir), (taken) =>
        taken
          ? Effect.addFinalizer(() =>
              Effect.promise(() => fs.rm(lockDir, { recursive: true, force: true }).catch(() => {}))
            )
          : Effect.void
      )
    )
    // Only the single try is uninterruptible (so a lock taken is always released); the waiting is not.
    while (!(yield* attempt)) {
      if (Date.now() > deadline) {
        return yield* new GitError({
          operation: "mirror",
          message: `the mirror lock ${lockDir} stayed taken for ${waitMs} ms`
        })
      }
      yield* Effect.sleep("50 millis")
    }
  })

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
      const exists = yield* pathExists(path.join(mirror, "HEAD"))
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
