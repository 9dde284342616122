/**
 * git through simple-git, made interruptible (an interrupted call aborts its git process) and run with a
 * minimal environment: no prompts, only the transports a repository URL may use.
 */
import { Data, Effect } from "effect"
import { type SimpleGit, type SimpleGitOptions, simpleGit } from "simple-git"

export class GitError extends Data.TaggedError("GitError")<{
  readonly operation: string
  readonly message: string
  readonly cause?: unknown
}> {}

/** Transports git may use for a request's repository; `ext::` and other remote helpers stay off. */
export const allowedProtocols = "https:http:ssh:git:file"

const gitEnv = (extra: Record<string, string>): Record<string, string> => {
  const env: Record<string, string> = {
    GIT_TERMINAL_PROMPT: "0",
    GIT_ALLOW_PROTOCOL: allowedProtocols,
    GIT_CONFIG_NOSYSTEM: "1",
    ...extra
  }
  for (const name of ["PATH", "HOME", "LANG", "SSH_AUTH_SOCK", "TMPDIR"]) {
    const value = process.env[name]
    if (value !== undefined && env[name] === undefined) env[name] = value
  }
  return env
}

const firstLine = (error: unknown) => {
  const text = error instanceof Error ? error.message : String(error)
  return (
    text
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("hint:"))
      .join("; ")
      .slice(0, 1_000) || "git failed"
  )
}

/**
 * Runs `use` against a simple-git instance rooted at `dir`; a failure says which operation failed.
 * `unsafe` lifts simple-git's guards for settings stageline made itself (credentials), never for
 * anything a request supplied.
 */
export const git = <A>(
  dir: string,
  operation: string,
  use: (git: SimpleGit) => Promise<A>,
  env: Record<string, string> = {},
  unsafe: SimpleGitOptions["unsafe"] = {}
) =>
  Effect.tryPromise({
    try: (signal) => use(simpleGit({ baseDir: dir, abort: signal, unsafe }).env(gitEnv(env))),
    catch: (cause) => new GitError({ operation, message: `git ${operation} failed: ${firstLine(cause)}`, cause })
  })
