/**
 * Whether a process is still running. A zombie is not: it has exited and only waits to be reaped, which
 * in a sandbox whose PID 1 never reaps can be forever.
 */
import * as fs from "node:fs"

export const isRunning = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    return process.platform !== "linux"
  }
}
