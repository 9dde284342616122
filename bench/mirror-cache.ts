/**
 * How much the mirror cache saves: a workspace made by a fresh clone of the remote against one made from
 * the repository's mirror (a fetch into the mirror, then a local clone), on a repository of realistic
 * size, in one run on this machine. Reported as a ratio; nothing is asserted.
 *
 *   npm run bench:mirror [-- --files 4000 --commits 300 --runs 5]
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"
import { git } from "../src/git/Git.js"
import { updateMirror } from "../src/git/MirrorCache.js"

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : Number(process.argv[i + 1])
}
const files = arg("files", 4000)
const commits = arg("commits", 300)
const runs = arg("runs", 5)

const root = fs.mkdtempSync(path.join(os.tmpdir(), "stageline-bench-mirror-"))
const sh = (cwd: string, ...args: Array<string>) =>
  execFileSync("git", ["-c", "user.name=Bench", "-c", "user.email=bench@example.invalid", ...args], {
    cwd,
    stdio: "pipe"
  })

const makeRepository = () => {
  const work = path.join(root, "work")
  fs.mkdirSync(work)
  sh(work, "init", "-q", "-b", "main")
  for (let f = 0; f < files; f++) {
    const dir = path.join(work, "src", `m${f % 50}`)
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, `file${f}.ts`), `export const value${f} = ${"x".repeat(200)}${f}\n`.repeat(20))
  }
  sh(work, "add", "-A")
  sh(work, "commit", "-q", "-m", "initial")
  for (let c = 1; c < commits; c++) {
    const f = (c * 7) % files
    fs.appendFileSync(path.join(work, "src", `m${f % 50}`, `file${f}.ts`), `// change ${c}\n`)
    sh(work, "commit", "-q", "-am", `change ${c}`)
  }
  const bare = path.join(root, "remote.git")
  sh(root, "clone", "-q", "--bare", work, bare)
  return `file://${bare}`
}

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const start = performance.now()
    yield* effect
    return performance.now() - start
  })

const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const main = Effect.gen(function* () {
  const url = makeRepository()
  const size = execFileSync("du", ["-sk", path.join(root, "remote.git")])
    .toString()
    .split("\t")[0]
  const cache = path.join(root, "mirrors")
  // The first mirror is made once, as the first request on a repository would.
  yield* updateMirror({ cacheDir: cache, repoUrl: url, env: {}, unsafe: {}, lockWaitMs: 60_000 })
  const fresh: Array<number> = []
  const mirrored: Array<number> = []
  for (let i = 0; i < runs; i++) {
    const a = path.join(root, `fresh-${i}`)
    fresh.push(yield* timed(git(root, "clone", (g) => g.clone(url, a, ["--branch", "main", "--single-branch"]))))
    const b = path.join(root, `mirrored-${i}`)
    mirrored.push(
      yield* timed(
        Effect.gen(function* () {
          const mirror = yield* updateMirror({ cacheDir: cache, repoUrl: url, env: {}, unsafe: {}, lockWaitMs: 60_000 })
          yield* git(root, "clone", (g) => g.clone(mirror, b, ["--branch", "main", "--single-branch"]))
          yield* git(b, "remote", (g) => g.remote(["set-url", "origin", url]))
        })
      )
    )
  }
  const result = {
    measured_at: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length,
      cpu: os.cpus()[0]?.model ?? "?",
      memory_gib: Math.round(os.totalmem() / 2 ** 30),
      node: process.version
    },
    repository: { files, commits, bare_size_kib: Number(size) },
    runs,
    fresh_clone_ms_median: Math.round(median(fresh)),
    from_mirror_ms_median: Math.round(median(mirrored)),
    speedup: Math.round((median(fresh) / median(mirrored)) * 100) / 100
  }
  const out = path.join(import.meta.dirname, "results", "mirror-cache.json")
  fs.writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`)
  console.log(
    `repository: ${files} files, ${commits} commits, ${size} KiB bare\n` +
      `fresh clone: ${result.fresh_clone_ms_median} ms (median of ${runs})\n` +
      `from mirror: ${result.from_mirror_ms_median} ms (fetch + local clone)\n` +
      `speed-up: ${result.speedup}x   (written to ${path.relative(process.cwd(), out)})`
  )
}).pipe(Effect.ensuring(Effect.sync(() => fs.rmSync(root, { recursive: true, force: true }))))

Effect.runPromise(main.pipe(Effect.provide(NodeContext.layer)))
