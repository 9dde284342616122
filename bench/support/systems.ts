/**
 * The three queues behind one shape, so every benchmark treats them alike: start workers at a
 * concurrency, insert jobs (one transaction, or one at a time), count what is durably done, see when a
 * job's handler started, reset between runs.
 *
 * - stageline: the `claim → noop → record` pipeline (bench/pipelines/noop.yaml), a result row per request.
 * - graphile-worker, default mode: `concurrency`, its defaults otherwise (prepared statements, pool of 10).
 * - graphile-worker, batched mode: as its performance guide configures it, `localQueue` (size 500) and
 *   batched completion (`completeJobBatchDelay: 0`, `failJobBatchDelay: 0`), prepared statements on.
 * - pg-boss: `concurrency` workers (`work()` called that many times, batch size 1, its fastest poll of
 *   0.5 s); pg-boss does not LISTEN, and a worker waits its polling interval even after a fetch that found
 *   a job, so each handler calls `notifyWorker` to go straight on while there is work.
 *
 * Every system gets a pool of 10 connections, its default, and logs at warnings only.
 */
import * as path from "node:path"
import { Logger, makeWorkerUtils, run as runGraphile, type WorkerUtils } from "graphile-worker"
import type pg from "pg"
import PgBoss from "pg-boss"
import { startedHook } from "../plugins/noop.js"
import { connect, createDatabase, dropDatabase } from "./databases.js"
import { startStageline } from "./stageline.js"
import { now, sleep } from "./stats.js"
import { stagelineTables } from "./tables.js"

export const noopPipeline = path.join(import.meta.dirname, "..", "pipelines", "noop.yaml")

export interface Running {
  /** Inserts `n` jobs in one transaction; resolves once it committed. */
  readonly insertMany: (n: number) => Promise<void>
  /** Inserts one job; resolves once it committed, with a token to ask when it started. */
  readonly insertOne: () => Promise<string>
  /** When the handler of the job `token` started (ms since the epoch), waiting for it. */
  readonly startedAt: (token: string) => Promise<number>
  /** Jobs whose completion is committed. */
  readonly completed: () => Promise<number>
  readonly stop: () => Promise<void>
}

export interface QueueSystem {
  readonly name: string
  readonly start: (concurrency: number) => Promise<Running>
  /** Empties the system's tables between runs. */
  readonly reset: () => Promise<void>
  readonly close: () => Promise<void>
}

const quietGraphileLogger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`graphile-worker ${level}: ${message}`)
})

/** How long a job may take to start before the benchmark gives up on it. */
const startTimeoutMs = 60_000

/** Waits for a start time that a handler in this process records. */
const startTimes = (system: string) => {
  const times = new Map<string, number>()
  const waiting = new Map<string, (t: number) => void>()
  return {
    record: (token: string, t = now()) => {
      const resolve = waiting.get(token)
      if (resolve) {
        waiting.delete(token)
        resolve(t)
      } else times.set(token, t)
    },
    wait: (token: string) =>
      new Promise<number>((resolve, reject) => {
        const t = times.get(token)
        if (t !== undefined) {
          times.delete(token)
          return resolve(t)
        }
        const timer = setTimeout(() => {
          waiting.delete(token)
          reject(new Error(`${system}: job ${token} did not start within ${startTimeoutMs} ms`))
        }, startTimeoutMs)
        waiting.set(token, (started) => {
          clearTimeout(timer)
          resolve(started)
        })
      }),
    /** Forgets the starts nobody asked for (a throughput run's). */
    clear: () => times.clear()
  }
}

export const stageline = async (): Promise<QueueSystem> => {
  const db = await createDatabase("stageline")
  const client = await connect(db.url)
  const tables = stagelineTables(client)
  let migrated = false
  // The noop stage tells this process when it started, as graphile-worker's and pg-boss's handlers do:
  // polling for the result row meanwhile would load the machine the worker runs on.
  const starts = startTimes("stageline")
  ;(globalThis as { [startedHook]?: (requestId: string, at: number) => void })[startedHook] = starts.record
  return {
    name: "stageline",
    start: async (concurrency) => {
      const worker = await startStageline({
        url: db.url,
        database: db.name,
        pipeline: noopPipeline,
        workerCount: concurrency,
        observer: client
      })
      migrated = true
      return {
        insertMany: tables.insertMany,
        insertOne: async () => {
          const { rows } = await client.query<{ id: string }>(
            `INSERT INTO orchestration_requests (prompt) VALUES ('noop') RETURNING id`
          )
          return rows[0]!.id
        },
        startedAt: starts.wait,
        completed: tables.completed,
        stop: worker.stop
      }
    },
    reset: async () => {
      starts.clear()
      if (migrated) await tables.empty()
    },
    close: async () => {
      await client.end()
      await dropDatabase(db.name)
    }
  }
}

export const graphileWorker = async (mode: "default" | "batched"): Promise<QueueSystem> => {
  const db = await createDatabase(`graphile_${mode}`)
  const client = await connect(db.url)
  const utils: WorkerUtils = await makeWorkerUtils({ connectionString: db.url, logger: quietGraphileLogger })
  await utils.migrate()
  const starts = startTimes(`graphile-worker (${mode})`)
  // A completed job is deleted (a fetched one stays, locked, until its completion commits), so what is
  // done is what was inserted less what is left.
  let inserted = 0
  return {
    name: mode === "default" ? "graphile-worker" : "graphile-worker (batched)",
    start: async (concurrency) => {
      const runner = await runGraphile({
        connectionString: db.url,
        concurrency,
        noHandleSignals: true,
        logger: quietGraphileLogger,
        taskList: {
          noop: async (payload) => {
            const token = (payload as { token?: string } | null)?.token
            if (token) starts.record(token)
          }
        },
        preset: {
          worker: {
            preparedStatements: true,
            ...(mode === "batched" ? { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } : {})
          }
        }
      })
      // Its listener is up once it has taken a first look for jobs.
      await sleep(200)
      return {
        insertMany: async (n) => {
          await utils.addJobs(Array.from({ length: n }, () => ({ identifier: "noop", payload: {} })))
          inserted += n
        },
        insertOne: async () => {
          const token = crypto.randomUUID()
          await client.query(`SELECT graphile_worker.add_job('noop', json_build_object('token', $1::text))`, [token])
          inserted++
          return token
        },
        startedAt: starts.wait,
        completed: async () => {
          const { rows } = await client.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM graphile_worker._private_jobs`
          )
          return inserted - rows[0]!.n
        },
        stop: async () => {
          await runner.stop()
        }
      }
    },
    reset: async () => {
      await client.query(`TRUNCATE graphile_worker._private_jobs, graphile_worker._private_job_queues CASCADE`)
      inserted = 0
    },
    close: async () => {
      await utils.release()
      await client.end()
      await dropDatabase(db.name)
    }
  }
}

export const pgBoss = async (): Promise<QueueSystem> => {
  const db = await createDatabase("pgboss")
  const client = await connect(db.url)
  const starts = startTimes("pg-boss")
  const queue = "noop"
  return {
    name: "pg-boss",
    start: async (concurrency) => {
      const boss = new PgBoss({ connectionString: db.url, max: 10 })
      boss.on("error", (error) => console.error(`pg-boss error: ${error.message}`))
      await boss.start()
      await boss.createQueue(queue)
      for (let i = 0; i < concurrency; i++) {
        let id = ""
        id = await boss.work<{ token?: string }>(queue, { batchSize: 1, pollingIntervalSeconds: 0.5 }, async (jobs) => {
          for (const job of jobs) if (job.data?.token) starts.record(job.data.token)
          boss.notifyWorker(id)
        })
      }
      return {
        insertMany: async (n) => {
          await boss.insert(Array.from({ length: n }, () => ({ name: queue, data: {} })))
        },
        insertOne: async () => {
          const token = crypto.randomUUID()
          await boss.send(queue, { token })
          return token
        },
        startedAt: starts.wait,
        completed: async () => {
          const { rows } = await client.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'completed'`,
            [queue]
          )
          return rows[0]!.n
        },
        stop: async () => {
          await boss.stop({ graceful: true, wait: true, timeout: 10_000 })
        }
      }
    },
    reset: async () => {
      await client.query(`DELETE FROM pgboss.job WHERE name = $1`, [queue]).catch(() => {})
    },
    close: async () => {
      await client.end()
      await dropDatabase(db.name)
    }
  }
}

export type { pg }
