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

/**
 * The point just before a child is started, from which on the processes it may start can be told from
 * the ones that were there before (see `findMarked`). Null where /proc does not say.
 */
export interface SpawnPoint {
  /** Processes and threads created since boot, machine-wide (`processes` in /proc/stat). */
  readonly forks: number
  /** Processes and threads alive, machine-wide (/proc/loadavg). */
  readonly tasks: number
}

const numberIn = (file: string, pattern: RegExp): number | null => {
  const match = readProcFile(file)?.toString("latin1").match(pattern)
  return match?.[1] === undefined ? null : Number(match[1])
}
const forksSinceBoot = () => numberIn("/proc/stat", /^processes (\d+)$/m)
const tasksAlive = () => numberIn("/proc/loadavg", /^\S+ \S+ \S+ \d+\/(\d+) /)
const lastPid = () => numberIn("/proc/sys/kernel/ns_last_pid", /^(\d+)/)
const pidMax = () => numberIn("/proc/sys/kernel/pid_max", /^(\d+)/)

export const spawnPoint = (): SpawnPoint | null => {
  if (!procAvailable) return null
  const forks = forksSinceBoot()
  const tasks = tasksAlive()
  return forks === null || tasks === null ? null : { forks, tasks }
}

/**
 * Which pids can belong to processes started after `child` (started at `point`), or null when any pid
 * can. The kernel hands out pids in a cycle: each new one is the next free one after the last, wrapping at
 * pid_max to 300. So everything started after the child has a pid in the cycle's stretch from the child's
 * pid to the last one handed out, unless the cycle came round past the child's pid since. It cannot have
 * while the pids handed out, plus those skipped because they were in use, are fewer than the cycle is
 * long; a pid in use is some task's pid, process group or session, so there are at most three per task
 * alive then or started since. Both counts are machine-wide (every pid namespace's), which overestimates
 * them and only makes the answer null more often: then every process is looked at.
 */
const startedAfter = (child: number, point: SpawnPoint | null): ((pid: number) => boolean) | null => {
  if (point === null) return null
  const forks = forksSinceBoot()
  const tasks = tasksAlive()
  const last = lastPid()
  const max = pidMax()
  if (forks === null || tasks === null || last === null || max === null) return null
  const handedOut = forks - point.forks
  const inUse = 3 * (Math.max(tasks, point.tasks) + handedOut)
  if (handedOut < 0 || handedOut + inUse + 1_000 >= max - 300) return null
  return last >= child ? (pid) => pid > child && pid <= last : (pid) => pid > child || pid <= last
}

/**
 * The processes whose environment carries `markerVariable=token`: given the child's pid and the point it
 * was started at, only among the processes started after it (the others cannot carry a token made for
 * it), which spares reading the environment of every process on the machine after every run. Empty where
 * /proc is not available.
 */
export const findMarked = (token: string, after?: { readonly pid: number; readonly point: SpawnPoint | null }) => {
  if (!procAvailable) return []
  const needle = Buffer.from(`${markerVariable}=${token}\0`)
  const found: Array<number> = []
  let entries: Array<string>
  try {
    entries = fs.readdirSync("/proc")
  } catch {
    return []
  }
  const candidate = after === undefined ? null : startedAfter(after.pid, after.point)
  for (const entry of entries) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || pid === process.pid || (candidate !== null && !candidate(pid))) continue
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

/** Where to look for a tree's processes: its group, and what carries its token (see `findMarked`). */
interface Tree {
  readonly pgid: number
  readonly token: string
  readonly point: SpawnPoint | null
}

const marked = (tree: Tree) => findMarked(tree.token, { pid: tree.pgid, point: tree.point })

const signalAll = (tree: Tree, signal: NodeJS.Signals) => {
  try {
    process.kill(-tree.pgid, signal)
  } catch {
    // the group is empty
  }
  for (const pid of marked(tree)) {
    try {
      process.kill(pid, signal)
    } catch {
      // exited meanwhile
    }
  }
}

const anyAlive = (tree: Tree) => groupAlive(tree.pgid) || marked(tree).length > 0

/**
 * Ends the process group `pgid` and every process marked with `token`: SIGTERM, then up to `graceMs` for
 * them to go, then SIGKILL. Returns how many were still alive after SIGTERM's grace (0 when all went
 * politely). `point` is `spawnPoint()` taken just before the group's leader was started, when known.
 */
export const terminateTree = (pgid: number, token: string, graceMs: number, point: SpawnPoint | null = null) =>
  Effect.gen(function* () {
    const tree: Tree = { pgid, token, point }
    if (!anyAlive(tree)) return 0
    signalAll(tree, "SIGTERM")
    const deadline = Date.now() + graceMs
    while (Date.now() < deadline && anyAlive(tree)) {
      yield* Effect.sleep("25 millis")
    }
    if (!anyAlive(tree)) return 0
    const stubborn = marked(tree).length + (groupAlive(pgid) ? 1 : 0)
    signalAll(tree, "SIGKILL")
    // SIGKILL cannot be refused; wait the short moment it takes the kernel to reap them.
    const killDeadline = Date.now() + 2_000
    while (Date.now() < killDeadline && anyAlive(tree)) {
      yield* Effect.sleep("10 millis")
    }
    return stubborn
  }).pipe(Effect.uninterruptible)
