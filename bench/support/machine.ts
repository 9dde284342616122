/** What the numbers were measured on, written next to them. */
import { execFileSync } from "node:child_process"
import * as os from "node:os"
import type pg from "pg"

export const machine = async (client: pg.Client) => {
  const version = await client.query<{ server_version: string }>("SHOW server_version")
  return {
    cpu: os.cpus()[0]?.model ?? "?",
    cores: os.cpus().length,
    memory_gib: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    postgresql: version.rows[0]?.server_version ?? "?",
    os: `${os.type()} ${os.release()}`,
    git_commit: (() => {
      try {
        return execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: import.meta.dirname })
          .toString()
          .trim()
      } catch {
        return null
      }
    })()
  }
}

/** The 1-minute load average: other work on the machine shows here. */
export const load = () => Math.round(os.loadavg()[0]! * 100) / 100
