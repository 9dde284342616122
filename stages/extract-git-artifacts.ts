/**
 * extract-git-artifacts: what the agent left in the repository: HEAD, the branch, the commits it made since
 * the clone, and the pull request it names in its output, if any. A workspace that is not a git
 * repository yields empty artifacts, not an error.
 */
import * as path from "node:path"
import { Effect, Option, Schema } from "effect"
import { inheritedEnv } from "../src/agent/AgentEnvironment.js"
import { pathExists } from "../src/fs/Files.js"
import { git } from "../src/git/Git.js"
import type { GitArtifacts } from "../src/pipeline/RunContext.js"
import * as Stage from "../src/pipeline/Stage.js"
import { runSubprocess, which } from "../src/process/Subprocess.js"

const prUrlPattern = /https:\/\/[A-Za-z0-9.-]+\/[\w.-]+\/[\w.-]+\/(?:pull|merge_requests|pull-requests)\/\d+/g

/** The last pull-request URL in the text: the one the agent ended on. */
export const findPrUrl = (...texts: ReadonlyArray<string | null | undefined>): string | null => {
  for (const text of [...texts].reverse()) {
    const found = text ? [...text.matchAll(prUrlPattern)] : []
    if (found.length > 0) return found[found.length - 1]![0]
  }
  return null
}

/** `gh pr view <branch> --json url` in the workspace, when gh is on PATH and a token is set; else null. */
const prUrlFromGh = (dir: string, branch: string) =>
  Effect.gen(function* () {
    const token = process.env.GH_TOKEN || process.env.GITHUB_TOKEN
    const gh = which("gh")
    if (!token || Option.isNone(gh)) return null
    const result = yield* runSubprocess({
      command: gh.value,
      args: ["pr", "view", branch, "--json", "url", "--jq", ".url"],
      cwd: dir,
      env: { ...inheritedEnv(process.env), GH_TOKEN: token, GH_PROMPT_DISABLED: "1", NO_COLOR: "1" },
      outputLimitBytes: 64 * 1024,
      killGraceMs: 1_000
    }).pipe(
      Effect.timeoutOption("30 seconds"),
      Effect.orElseSucceed(() => Option.none())
    )
    if (Option.isNone(result) || result.value.exitCode !== 0) return null
    const url = result.value.stdout.text.trim()
    return /^https:\/\/\S+$/.test(url) ? url : null
  })

const none: GitArtifacts = { headSha: null, branch: null, commits: [], diffStat: null, pushed: false, prUrl: null }

const count = (text: string, what: RegExp) => Number(what.exec(text)?.[1] ?? 0)

export default Stage.make({
  name: "extract-git-artifacts",
  description:
    "Reports HEAD, the branch, the commits since the clone, the diff stat, whether it was pushed, and its pull request.",
  options: Schema.Struct({}),
  requires: ["workspace"],
  provides: ["git"],
  run: () => (input) =>
    Effect.gen(function* () {
      const { workspace, agent } = input
      const resultText = typeof agent?.result?.result === "string" ? agent.result.result : null
      const prUrl = findPrUrl(agent?.stdout, resultText)
      const isRepo = yield* pathExists(path.join(workspace.dir, ".git"))
      if (!isRepo) return { git: { ...none, prUrl } }

      const headSha = yield* git(workspace.dir, "rev-parse", (g) => g.revparse(["HEAD"])).pipe(
        Effect.map((s) => s.trim()),
        Effect.orElseSucceed(() => null)
      )
      if (headSha === null) return { git: { ...none, prUrl } }
      const branchName = yield* git(workspace.dir, "rev-parse", (g) => g.revparse(["--abbrev-ref", "HEAD"])).pipe(
        Effect.map((s) => s.trim()),
        Effect.map((b) => (b === "HEAD" ? null : b))
      )
      const range = workspace.baseSha ? [`${workspace.baseSha}..HEAD`] : ["HEAD"]
      const log = yield* git(workspace.dir, "log", (g) => g.raw(["log", "--format=%H%x1f%s", ...range, "--"]))
      const commits = log
        .split("\n")
        .filter((line) => line.includes("\x1f"))
        .map((line) => {
          const [sha, subject] = line.split("\x1f")
          return { sha: sha!, subject: subject ?? "" }
        })
      const diffStat = workspace.baseSha
        ? yield* git(workspace.dir, "diff", (g) =>
            g.raw(["diff", "--shortstat", workspace.baseSha!, "HEAD", "--"])
          ).pipe(
            Effect.map((text) => ({
              filesChanged: count(text, /(\d+) files? changed/),
              insertions: count(text, /(\d+) insertions?\(\+\)/),
              deletions: count(text, /(\d+) deletions?\(-\)/)
            }))
          )
        : null
      // Local refs only: a push updates origin's remote-tracking ref, and nothing is fetched to check.
      const remoteSha =
        branchName === null
          ? null
          : yield* git(workspace.dir, "rev-parse", (g) => g.revparse([`refs/remotes/origin/${branchName}`])).pipe(
              Effect.map((s) => s.trim()),
              Effect.orElseSucceed(() => null)
            )
      const pushed = remoteSha === headSha && commits.length > 0
      // The forge knows best which PR the branch has; ask it when the gh CLI and a token are there.
      const fromForge = pushed && branchName !== null ? yield* prUrlFromGh(workspace.dir, branchName) : null
      return { git: { headSha, branch: branchName, commits, diffStat, pushed, prUrl: fromForge ?? prUrl } }
    })
})
