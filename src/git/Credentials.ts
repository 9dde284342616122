/**
 * How a clone authenticates, without a secret ever landing in a URL, `.git/config`, a log or a row.
 *
 * - HTTPS: `GH_TOKEN` (or `GITHUB_TOKEN`) is offered by a credential helper given to git through
 *   `GIT_CONFIG_*` variables (never written to disk), over HTTPS (plain HTTP only to this machine), and
 *   only to the hosts in `GIT_TOKEN_HOSTS`
 *   (default: github.com and `GH_HOST`). A request's `repo_url` naming any other host gets no token, so a
 *   hostile row cannot send the worker's token to a server of its choosing.
 * - SSH: `SSH_PRIVATE_KEY` is written to a 0600 file in a folder of its own (removed right after the
 *   clone, and never the agent's TMPDIR) and
 *   used through `GIT_SSH_COMMAND` with `IdentitiesOnly`. Host keys: the ones in `SSH_KNOWN_HOSTS` when
 *   set (and only those: `StrictHostKeyChecking=yes`); otherwise trust on first use (`accept-new`) with a
 *   known-hosts file kept beside the workspaces, so a host key that changes later is refused.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Effect } from "effect"

export interface CloneAuth {
  /** Variables for the git process only. */
  readonly env: Record<string, string>
  /** The simple-git guards these variables need lifted (they are ours, not a request's). */
  readonly unsafe: {
    readonly allowUnsafeConfigEnvCount?: true
    readonly allowUnsafeCredentialHelper?: true
    readonly allowUnsafeSshCommand?: true
  }
  /** What was used, for logs and rows: never the secret. */
  readonly method: "none" | "token" | "ssh-key"
}

const hostOf = (url: string): string | null => {
  const scp = /^[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):/.exec(url)
  if (scp) return scp[1]!
  try {
    return new URL(url).host
  } catch {
    return null
  }
}

const isLoopback = (host: string | null) =>
  host !== null && /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/.test(host)

const isSsh = (url: string) => url.startsWith("ssh://") || /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:/.test(url)

/** Keys pasted into a single-line variable often carry `\n` escapes; ssh needs real lines and a final one. */
const normaliseKey = (key: string) => `${key.replace(/\\n/g, "\n").trim()}\n`

export const tokenHosts = (env: NodeJS.ProcessEnv): ReadonlyArray<string> =>
  (env.GIT_TOKEN_HOSTS ?? ["github.com", env.GH_HOST].filter(Boolean).join(","))
    .split(",")
    .map((h) => h.trim().toLowerCase())
    .filter(Boolean)

export const cloneAuth = (
  repoUrl: string,
  privateDir: string,
  knownHostsFile: string,
  env: NodeJS.ProcessEnv = process.env
) =>
  Effect.promise(async (): Promise<CloneAuth> => {
    const host = hostOf(repoUrl)?.toLowerCase() ?? null
    if (isSsh(repoUrl)) {
      const key = env.SSH_PRIVATE_KEY
      if (!key) return { env: {}, unsafe: {}, method: "none" }
      const keyFile = path.join(privateDir, "ssh-key")
      await fs.writeFile(keyFile, normaliseKey(key), { mode: 0o600 })
      const pinned = env.SSH_KNOWN_HOSTS
      let hostsFile = knownHostsFile
      if (pinned) {
        hostsFile = path.join(privateDir, "known_hosts")
        await fs.writeFile(hostsFile, `${pinned.replace(/\\n/g, "\n").trim()}\n`, { mode: 0o600 })
      } else {
        await fs.mkdir(path.dirname(knownHostsFile), { recursive: true })
      }
      const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`
      return {
        env: {
          GIT_SSH_COMMAND: [
            "ssh",
            `-i ${quote(keyFile)}`,
            "-o IdentitiesOnly=yes",
            "-o BatchMode=yes",
            `-o StrictHostKeyChecking=${pinned ? "yes" : "accept-new"}`,
            `-o UserKnownHostsFile=${quote(hostsFile)}`
          ].join(" ")
        },
        unsafe: { allowUnsafeSshCommand: true },
        method: "ssh-key"
      }
    }
    const token = env.GH_TOKEN || env.GITHUB_TOKEN
    // Plain HTTP would send the token in clear text: only to this machine.
    const secure = repoUrl.startsWith("https://") || (repoUrl.startsWith("http://") && isLoopback(host))
    if (!token || host === null || !secure || !tokenHosts(env).includes(host)) {
      return { env: {}, unsafe: {}, method: "none" }
    }
    const scheme = repoUrl.startsWith("http://") ? "http" : "https"
    return {
      env: {
        GIT_CONFIG_COUNT: "1",
        GIT_CONFIG_KEY_0: `credential.${scheme}://${host}.helper`,
        // The helper reads the token from this process's environment; git stores none of it.
        GIT_CONFIG_VALUE_0:
          '!f() { test "$1" = get && echo username=x-access-token && echo "password=$STAGELINE_GIT_TOKEN"; }; f',
        STAGELINE_GIT_TOKEN: token
      },
      unsafe: { allowUnsafeConfigEnvCount: true, allowUnsafeCredentialHelper: true },
      method: "token"
    }
  })
