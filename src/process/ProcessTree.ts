/**
 * Finding and ending every process a child started, including those that left its process group.
 *
 * A child gets its own process group, so one signal to the group reaches it and its ordinary descendants.
 * A descendant that calls `setsid` leaves the group; it still inherits the environment, so each child is
 * started with a unique marker variable and, on Linux, `/proc/<pid>/environ` finds whatever carries it
 * (the way build servers find what a job left behind).
 */
import * as fs from "node:fs"
import { Effect } from "effect"

export const markerVariable = "STAGELINE_RUN_TOKEN"

/**
 * The worker a child belongs to, as `<pid>:<start time>`. A child's own child outlives a SIGKILLed worker
 * (the parent-death signal reaches only the direct child); the next worker on the machine finds such
 * orphans by this mark, sees their worker is gone, and ends them.
 */
export const ownerVariable = "STAGELINE_WORKER"

/** When the process started (in clock ticks since boot, from /proc), or null where that is not known. */
export const startTime = (pid: number): string | null => statFields(pid)?.[19] ?? null

/** This process's owner mark: `<pid>:<start time>` (the start time tells a reused pid apart). */
export const ownerMark = (): string => `${process.pid}:${startTime(process.pid) ?? "?"}`

/** Whether the process a mark names is still running (not a zombie, not a later process with its pid). */
export const ownerAlive = (mark: string): boolean => {
  const [pid, started] = mark.split(":")
  if (!pid || !/^\d+$/.test(pid)) return false
  try {
    process.kill(Number(pid), 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false
  }
  if (!procAvailable || started === undefined || started === "?") return true
  const fields = statFields(Number(pid))
  return fields !== null && fields[0] !== "Z" && fields[19] === started
}

/** Kills (SIGKILL) every process left by a worker that is no longer running; returns how many. */
export const reapOrphans = (): number => {
  if (!procAvailable) return 0
  const needle = Buffer.from(`${ownerVariable}=`)
  let reaped = 0
  for (const entry of fs.readdirSync("/proc")) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || pid === process.pid) continue
    let environ: Buffer
    try {
      environ = fs.readFileSync(`/proc/${pid}/environ`)
    } catch {
      continue
    }
    const at = environ.indexOf(needle)
    if (at === -1 || (at > 0 && environ[at - 1] !== 0) || isZombie(pid)) continue
    const end = environ.indexOf(0, at)
    const mark = environ.subarray(at + needle.length, end === -1 ? undefined : end).toString()
    if (ownerAlive(mark)) continue
    try {
      process.kill(pid, "SIGKILL")
      reaped++
    } catch {
      // gone meanwhile
    }
  }
  return reaped
}

const procAvailable = process.platform === "linux" && fs.existsSync("/proc/self/environ")

/**
 * A /proc file's contents, read into a buffer reused from call to call (a view of it, valid until the
 * next call), or null when the process is gone or not ours to read. A scan reads one file per process on
 * the machine after every run, so it allocates nothing per file and skips the `fstat` that `readFileSync`
 * makes (useless here: /proc reports every size as 0).
 */
let scratch = Buffer.allocUnsafe(64 * 1024)
const readProcFile = (file: string): Buffer | null => {
  let fd: number
  try {
    fd = fs.openSync(file, "r")
  } catch {
    return null
  }
  try {
    let length = 0
    while (true) {
      if (length === scratch.length) {
        const bigger = Buffer.allocUnsafe(scratch.length * 2)
        scratch.copy(bigger, 0, 0, length)
        scratch = bigger
      }
      const read = fs.readSync(fd, scratch, length, scratch.length - length, null)
      if (read === 0) return scratch.subarray(0, length)
      length += read
    }
  } catch {
    return null
  } finally {
    fs.closeSync(fd)
  }
}

/** The processes whose environment carries `markerVariable=token`. Empty where /proc is not available. */
export const findMarked = (token: string): Array<number> => {
  if (!procAvailable) return []
  const needle = Buffer.from(`${markerVariable}=${token}\0`)
  const found: Array<number> = []
  let entries: Array<string>
  try {
    entries = fs.readdirSync("/proc")
  } catch {
    return []
  }
  for (const entry of entries) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || pid === process.pid) continue
    const environ = readProcFile(`/proc/${pid}/environ`)
    if (environ?.includes(needle) && !isZombie(pid)) found.push(pid)
  }
  return found
}

const isZombie = (pid: number): boolean => (statFields(pid)?.[0] ?? "Z") === "Z"

/** Fields of /proc/<pid>/stat after the command name: state is [0], the process group [2]. */
const statFields = (pid: number): Array<string> | null => {
  const stat = readProcFile(`/proc/${pid}/stat`)?.toString("utf8")
  return stat === undefined ? null : stat.slice(stat.lastIndexOf(")") + 2).split(" ")
}

/**
 * Whether any live process is in the group. A zombie does not count: it is dead, only not yet reaped
 * (and one reparented to a PID 1 that never reaps would otherwise look alive forever). The kernel answers
 * "no member at all" (ESRCH) without a look at /proc, which is the usual case once a program has exited;
 * only a group that still has members is looked at process by process, to leave the zombies out.
 */
const groupAlive = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false
  }
  if (!procAvailable) return true
  for (const entry of fs.readdirSync("/proc")) {
    const fields = /^\d+$/.test(entry) ? statFields(Number(entry)) : null
    if (fields && Number(fields[2]) === pgid && fields[0] !== "Z") return true
  }
  return false
}

const signalAll = (pgid: number, token: string, signal: NodeJS.Signals) => {
  try {
    process.kill(-pgid, signal)
  } catch {
    // the group is empty
  }
  for (const pid of findMarked(token)) {
    try {
      process.kill(pid, signal)
    } catch {
      // exited meanwhile
    }
  }
}

const anyAlive = (pgid: number, token: string) => groupAlive(pgid) || findMarked(token).length > 0

/**
 * Ends the process group `pgid` and every process marked with `token`: SIGTERM, then up to `graceMs` for
 * them to go, then SIGKILL. Returns how many were still alive after SIGTERM's grace (0 when all went
 * politely).
 */
export const terminateTree = (pgid: number, token: string, graceMs: number) =>
  Effect.gen(function* () {
    if (!anyAlive(pgid, token)) return 0
    signalAll(pgid, token, "SIGTERM")
    const deadline = Date.now() + graceMs
    while (Date.now() < deadline && anyAlive(pgid, token)) {
      yield* Effect.sleep("25 millis")
    }
    if (!anyAlive(pgid, token)) return 0
    const stubborn = findMarked(token).length + (groupAlive(pgid) ? 1 : 0)
    signalAll(pgid, token, "SIGKILL")
    // SIGKILL cannot be refused; wait the short moment it takes the kernel to reap them.
    const killDeadline = Date.now() + 2_000
    while (Date.now() < killDeadline && anyAlive(pgid, token)) {
      yield* Effect.sleep("10 millis")
    }
    return stubborn
  }).pipe(Effect.uninterruptible)
