// The dashboard's pages: poll the JSON endpoints once a second and redraw. Text goes in with textContent
// only, so nothing a request carries (prompts, errors, agent output) can become markup.

const every = 1000

const el = (tag, attributes = {}, children = []) => {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value)
  for (const child of children) node.append(child)
  return node
}

const cell = (content, className) => {
  const td = el("td", className ? { class: className } : {})
  td.append(content ?? "—")
  return td
}

const link = (id) => el("a", { href: `/requests/${id}`, class: "id" }, [id])

const ms = (n) => (n === null || n === undefined ? "—" : n < 1000 ? `${n} ms` : `${(n / 1000).toFixed(1)} s`)
const seconds = (s) => (s === null || s === undefined ? "—" : ms(Math.round(s * 1000)))
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "—")

const fill = (table, rows, columns, empty) => {
  const body = document.querySelector(`[data-testid="${table}"] tbody`)
  body.replaceChildren(
    ...(rows.length === 0 ? [el("tr", {}, [el("td", { class: "empty", colspan: String(columns) }, [empty])])] : rows)
  )
}

const getJson = async (path) => {
  const response = await fetch(path, { cache: "no-store" })
  if (!response.ok) throw new Error(`${path}: ${response.status}`)
  return response.json()
}

const svg = (tag, attributes) => {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag)
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value)
  return node
}

const drawChart = (history) => {
  const width = 600
  const height = 160
  const series = ["ready", "scheduled", "processing"]
  const top = Math.max(1, ...history.flatMap((s) => series.map((k) => s[k])))
  const first = history.length > 0 ? history[0].at : 0
  const span = Math.max(1, (history.length > 0 ? history[history.length - 1].at : 1) - first)
  const x = (s) => (((s.at - first) / span) * width).toFixed(1)
  const y = (n) => (height - 4 - (n / top) * (height - 8)).toFixed(1)
  document.getElementById("chart").replaceChildren(
    ...series.map((key) =>
      svg("polyline", {
        class: key,
        "data-series": key,
        points: history.map((s) => `${x(s)},${y(s[key])}`).join(" ")
      })
    )
  )
  document.getElementById("chart-scale").textContent = `top ${top}; the last ${history.length} samples`
}

const queuePage = async () => {
  const [queue, requests] = await Promise.all([getJson("/api/queue"), getJson("/api/requests")])
  document.getElementById("worker").textContent = `worker ${queue.worker}`
  document.getElementById("depth").textContent =
    `${queue.depth.ready} ready, ${queue.depth.scheduled} scheduled, ${queue.depth.processing} processing`
  drawChart(queue.history)
  const now = Date.now()
  fill(
    "in-flight",
    requests.inFlight.map((r) =>
      el("tr", { "data-request": r.id }, [
        cell(link(r.id)),
        cell(r.claimed_by),
        cell(String(r.attempts)),
        cell(r.stage, "stage"),
        cell(r.stage_since ? ms(Math.max(0, now - new Date(r.stage_since).getTime())) : "—"),
        cell(seconds(r.running_s))
      ])
    ),
    6,
    "nothing in flight"
  )
  fill(
    "recent",
    requests.recent.map((r) =>
      el("tr", { "data-request": r.request_id }, [
        cell(link(r.request_id)),
        cell(String(r.attempt)),
        cell(r.status, `status status-${r.status}`),
        cell(ms(r.duration_ms), "duration"),
        cell(r.cost_usd, "cost"),
        cell(time(r.created_at)),
        cell((r.error ?? "").slice(0, 120))
      ])
    ),
    7,
    "no results yet"
  )
}

const finished = new Set(["completed", "failed", "cancelled"])

const describeEvent = (e) => {
  switch (e.kind) {
    case "stage-started":
      return "started"
    case "stage-finished":
      return `${e.data?.outcome ?? "finished"} in ${ms(e.data?.duration_ms)}${e.message ? ` (${e.message})` : ""}`
    default:
      return e.message ?? e.kind
  }
}

const requestPage = () => {
  const id = decodeURIComponent(location.pathname.split("/").pop())
  document.getElementById("request-id").textContent = id
  document.title = `stageline: ${id}`
  let after = "0"
  let seenFinished = false
  const rows = []
  const tick = async () => {
    const [detail, page] = await Promise.all([
      getJson(`/api/requests/${id}`),
      getJson(`/api/requests/${id}/events?after=${after}`)
    ])
    const r = detail.request
    const summary = [
      ["status", r.status],
      ["attempts", `${r.attempts}${r.max_attempts ? ` of ${r.max_attempts}` : ""}`],
      ["repository", r.repo_url ? `${r.repo_url} (${r.branch ?? "default branch"})` : "—"],
      ["created", new Date(r.created_at).toLocaleString()],
      ["claimed by", r.claimed_by ?? "—"],
      ["last error", r.last_error ?? "—"],
      ["prompt", r.prompt]
    ]
    document
      .getElementById("summary")
      .replaceChildren(
        ...summary.flatMap(([k, v]) => [
          el("dt", {}, [k]),
          el("dd", k === "status" ? { class: `status-${v}`, "data-testid": "status" } : {}, [v])
        ])
      )
    fill(
      "results",
      detail.results.map((x) =>
        el("tr", {}, [
          cell(String(x.attempt)),
          cell(x.status, `status status-${x.status}`),
          cell(ms(x.duration_ms)),
          cell(x.cost_usd),
          cell(time(x.created_at)),
          cell(x.error ?? "")
        ])
      ),
      6,
      "no result yet"
    )
    for (const e of page.events) {
      rows.push(
        el("tr", { "data-kind": e.kind, "data-stage": e.stage ?? "" }, [
          cell(new Date(e.at).toLocaleTimeString()),
          cell(`#${e.attempt}`),
          cell(e.stage),
          cell(describeEvent(e))
        ])
      )
      after = e.id
    }
    fill("events", rows.slice(), 4, "no events yet")
    // Events are written a moment after they happen (in batches), so a request's last events can land
    // after its final status: it must have been seen finished once already, with nothing new since, before
    // the page stops following it (as `stageline logs --follow` does).
    const done = finished.has(page.status) && page.events.length === 0 && seenFinished
    seenFinished = finished.has(page.status)
    document.getElementById("live").textContent = done ? `${page.status}` : "live"
    return done
  }
  const loop = async () => {
    let done = false
    try {
      done = await tick()
    } catch (error) {
      document.getElementById("live").textContent = `cannot reach the worker (${error.message}); retrying`
    }
    if (!done) setTimeout(loop, every)
  }
  loop()
}

if (document.body.dataset.page === "request") {
  requestPage()
} else {
  const loop = async () => {
    try {
      await queuePage()
      document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`
    } catch (error) {
      document.getElementById("updated").textContent = `cannot reach the worker (${error.message}); retrying`
    }
    setTimeout(loop, every)
  }
  loop()
}
