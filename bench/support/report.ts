/** The markdown table of a run: the figures, each target, and where it stands. */

interface Summary {
  readonly concurrency: number
  readonly jobs_per_s: Record<string, number>
  /** Absent from runs made before it was measured. */
  readonly main_thread_us_per_job?: Record<string, number>
  readonly stageline_vs_graphile_default: number
  readonly stageline_vs_graphile_batched: number
  readonly stageline_vs_pg_boss: number
  /** Absent from runs made before the reference was measured. */
  readonly stageline_vs_statements_alone?: number
}
type Percentiles = { p50_ms: number; p95_ms: number; p99_ms: number; max_ms: number }

const mark = (ok: boolean) => (ok ? "met" : "**missed**")

export const renderTable = (result: Record<string, unknown>) => {
  const m = result.machine as Record<string, unknown>
  const lines: Array<string> = [
    `Measured ${String(result.measured_at).slice(0, 16).replace("T", " ")} UTC on ${m.cpu}, ${m.cores} cores, ${
      m.memory_gib
    } GiB, Node ${m.node}, PostgreSQL ${m.postgresql} (commit ${m.git_commit}); load average ${
      result.load_at_start
    } at the start, ${result.load_at_end} at the end (the machine is shared).`,
    ""
  ]
  const targets: Array<[string, string, boolean]> = []
  const throughput = result.throughput as { jobs: number; rounds: number; summary: Array<Summary> } | undefined
  if (throughput) {
    lines.push(
      `**Throughput**, no-op jobs/s (${throughput.jobs} jobs per run, median of ${throughput.rounds} alternating rounds; ratios are the median of each round's ratio):`,
      "",
      "| concurrency | stageline | graphile-worker | graphile-worker (batched) | pg-boss | stageline's statements alone | stageline ÷ graphile | stageline ÷ batched | stageline ÷ pg-boss | stageline ÷ its statements alone |",
      "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for (const s of throughput.summary) {
      const j = s.jobs_per_s
      lines.push(
        `| ${s.concurrency} | ${j.stageline} | ${j["graphile-worker"]} | ${j["graphile-worker (batched)"]} | ${j["pg-boss"]} | ${j["stageline statements alone"] ?? "–"} | ${s.stageline_vs_graphile_default} | ${s.stageline_vs_graphile_batched} | ${s.stageline_vs_pg_boss} | ${s.stageline_vs_statements_alone ?? "–"} |`
      )
    }
    lines.push(
      "",
      "*stageline's statements alone*: a claim, then one statement that records an attempt and claims the next, one request at a time, sent by a bare loop with no runner around them (`bench/support/statements.ts`; from 16 on, two loops of half the workers each, as the worker records in two groups); not a target. It is what the worker sent for each request before it held several requests claimed ahead: a worker whose runs are quicker than that statement now records several requests, and claims as many, in one statement (`depthAhead` in `src/queue/Queue.ts`), so where the database was the bound (at 1) it goes past this rate."
    )
    if (throughput.summary.every((s) => s.main_thread_us_per_job !== undefined)) {
      lines.push(
        "",
        "**Main-thread time per job**, µs: the benchmark process's event loop busy over the run ÷ jobs, median of the rounds. Every system's worker runs in that process (with the benchmark's own poll every 20 ms, alike for all), so this is what a job cost its worker's main thread; the rest of a job's time is the database's and the wait for it.",
        "",
        "| concurrency | stageline | graphile-worker | graphile-worker (batched) | pg-boss | stageline's statements alone |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |"
      )
      for (const s of throughput.summary) {
        const b = s.main_thread_us_per_job ?? {}
        lines.push(
          `| ${s.concurrency} | ${b.stageline} | ${b["graphile-worker"]} | ${b["graphile-worker (batched)"]} | ${b["pg-boss"]} | ${b["stageline statements alone"] ?? "–"} |`
        )
      }
    }
    lines.push("")
    // Every concurrency's ratio, and which of them hold: a target missed at some is met at others.
    const ratios = (key: "stageline_vs_graphile_default" | "stageline_vs_graphile_batched", atLeast: number) => {
      const held = throughput.summary.filter((s) => s[key] >= atLeast).map((s) => s.concurrency)
      const measured = `ratio ${throughput.summary.map((s) => s[key]).join(" / ")} at concurrency ${throughput.summary
        .map((s) => s.concurrency)
        .join(" / ")}`
      const where =
        held.length === throughput.summary.length
          ? ""
          : held.length === 0
            ? "; held at none"
            : `; held at ${held.join(", ")} only`
      return [`${measured}${where}`, held.length === throughput.summary.length] as const
    }
    const vsDefault = ratios("stageline_vs_graphile_default", 1)
    targets.push(["throughput ≥ graphile-worker (default) at every concurrency", ...vsDefault])
    const vsBatched = ratios("stageline_vs_graphile_batched", 0.5)
    targets.push(["throughput ≥ ½ graphile-worker (batched) at every concurrency", ...vsBatched])
  }
  const pickup = result.pickup as { samples: number; by_system: Record<string, Percentiles> } | undefined
  if (pickup) {
    lines.push(
      `**Pickup latency**, INSERT commit to the job's first step (${pickup.samples} jobs inserted one at a time, idle worker):`,
      "",
      "| system | p50 ms | p95 ms | p99 ms | max ms |",
      "| --- | ---: | ---: | ---: | ---: |"
    )
    for (const [name, p] of Object.entries(pickup.by_system)) {
      lines.push(`| ${name} | ${p.p50_ms} | ${p.p95_ms} | ${p.p99_ms} | ${p.max_ms} |`)
    }
    lines.push("")
    const ours = pickup.by_system.stageline!.p50_ms
    const theirs = pickup.by_system["graphile-worker"]!.p50_ms
    targets.push(["pickup p50 ≤ graphile-worker's", `${ours} ms against ${theirs} ms`, ours <= theirs])
  }
  const depth = result.depth as
    | Array<{ pending: number; p50_ms: number; p95_ms: number; p99_ms: number; index_used: boolean }>
    | undefined
  if (depth) {
    lines.push(
      "**Claim latency by queue depth** (200 claims each, through the Queue service):",
      "",
      "| pending | p50 ms | p95 ms | p99 ms | claim index in the plan |",
      "| ---: | ---: | ---: | ---: | --- |"
    )
    for (const d of depth) {
      lines.push(`| ${d.pending} | ${d.p50_ms} | ${d.p95_ms} | ${d.p99_ms} | ${d.index_used ? "yes" : "**no**"} |`)
    }
    lines.push("")
    const first = depth[0]!
    const last = depth[depth.length - 1]!
    // Flat: the deepest queue's median within 1.5x (plus 0.5 ms of noise) of the empty one's, on the index.
    const flat = last.p50_ms <= first.p50_ms * 1.5 + 0.5 && depth.every((d) => d.index_used)
    targets.push([
      "claim latency flat at 1M pending",
      `p50 ${first.p50_ms} ms at ${first.pending}, ${last.p50_ms} ms at ${last.pending}; index ${
        depth.every((d) => d.index_used) ? "used" : "NOT used"
      }`,
      flat
    ])
  }
  const overhead = result.overhead as
    | {
        requests: number
        bare_spawn_ms: number
        minimal_pipeline_ms: number
        default_pipeline_ms: number
        overhead_minimal_ms: number
        overhead_default_ms: number
      }
    | undefined
  if (overhead) {
    lines.push(
      `**Process overhead** per request, the test-double agent (${overhead.requests} runs per round, WORKER_COUNT 1):`,
      "",
      "| | ms per request | above a bare spawn |",
      "| --- | ---: | ---: |",
      `| bare loop spawning the agent | ${overhead.bare_spawn_ms} | |`,
      `| claim → prepare-workspace → execute-mclaude → record | ${overhead.minimal_pipeline_ms} | ${overhead.overhead_minimal_ms} |`,
      `| the default stages, no repository | ${overhead.default_pipeline_ms} | ${overhead.overhead_default_ms} |`,
      ""
    )
    targets.push([
      "< 20 ms per request above a bare spawn",
      `${overhead.overhead_minimal_ms} ms (default stages: ${overhead.overhead_default_ms} ms)`,
      overhead.overhead_minimal_ms < 20
    ])
  }
  const memory = result.memory as
    | Array<{ worker_count: number; idle_rss_mb: number; load_peak_rss_mb: number; most_in_flight: number }>
    | undefined
  if (memory) {
    lines.push(
      "**Worker memory** (RSS of the `stageline run` process, agents excluded; load: 2 × WORKER_COUNT agent runs of 2 s):",
      "",
      "| WORKER_COUNT | idle MB | under load MB | agents at once |",
      "| ---: | ---: | ---: | ---: |"
    )
    for (const x of memory) {
      lines.push(`| ${x.worker_count} | ${x.idle_rss_mb} | ${x.load_peak_rss_mb} | ${x.most_in_flight} |`)
    }
    lines.push("")
    const at64 = memory.find((x) => x.worker_count === 64)
    if (at64) {
      targets.push([
        "worker RSS < 150 MB at WORKER_COUNT 64",
        `${at64.load_peak_rss_mb} MB under load`,
        at64.load_peak_rss_mb < 150
      ])
    }
  }
  lines.push("**Targets:**", "", "| target | measured | |", "| --- | --- | --- |")
  for (const [target, measured, ok] of targets) lines.push(`| ${target} | ${measured} | ${mark(ok)} |`)
  return `${lines.join("\n")}\n`
}
