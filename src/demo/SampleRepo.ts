/**
 * The demo's throw-away repository: a tiny service with one obvious security problem for the reviewer to
 * find, committed on `main` and cloned bare, so the worker clones it exactly as it would a real remote.
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { Effect } from "effect"

const run = promisify(execFile)

const files: Record<string, string> = {
  "README.md": "# widgets\n\nA tiny HTTP service that looks up widgets by name.\n",
  "package.json": `${JSON.stringify({ name: "widgets", version: "1.0.0", type: "module", main: "src/server.js" }, null, 2)}\n`,
  "src/db.js": `import pg from "pg"

const pool = new pg.Pool()

export async function findWidget(name) {
  // Looks a widget up by its name.
  const result = await pool.query("SELECT * FROM widgets WHERE name = '" + name + "'")
  return result.rows[0]
}
`,
  "src/server.js": `import http from "node:http"
import { findWidget } from "./db.js"

http
  .createServer(async (req, res) => {
    const name = new URL(req.url, "http://localhost").searchParams.get("name")
    const widget = await findWidget(name)
    res.end(JSON.stringify(widget ?? null))
  })
  .listen(8080)
`
}

const git = (cwd: string, ...args: Array<string>) =>
  run("git", args, {
    cwd,
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "Demo",
      GIT_AUTHOR_EMAIL: "demo@example.invalid",
      GIT_COMMITTER_NAME: "Demo",
      GIT_COMMITTER_EMAIL: "demo@example.invalid"
    }
  })

/** Creates the repository for the life of the scope; returns its `file://` URL. */
export const sampleRepo = Effect.acquireRelease(
  Effect.promise(async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), "stageline-demo-repo-"))
    const work = path.join(root, "work")
    for (const [name, content] of Object.entries(files)) {
      await fs.mkdir(path.dirname(path.join(work, name)), { recursive: true })
      await fs.writeFile(path.join(work, name), content)
    }
    await git(work, "init", "-q", "-b", "main")
    await git(work, "add", "-A")
    await git(work, "commit", "-q", "-m", "Widgets service")
    await git(root, "clone", "-q", "--bare", work, path.join(root, "widgets.git"))
    return { root, url: `file://${path.join(root, "widgets.git")}` }
  }),
  ({ root }) => Effect.promise(() => fs.rm(root, { recursive: true, force: true }))
)
