// The Celery console: overview, tasks, workers, queues (the /api/alertd/v1/console endpoints).
import { $, api, state, CONSOLE } from "./core.js";
import { h, fmt, num, pct, duration, bytes, spark, chart, timeAt } from "./fmt.js";

const TILES = [
  ["workers_online", "Workers online"],
  ["workers_lost", "Workers lost"],
  ["events_per_second", "Events"],
  ["tasks_per_second", "Tasks"],
  ["failure_ratio", "Failures"],
  ["queues_over_threshold", "Queues over threshold"],
  ["firing", "Firing alerts"],
];
const BAD = { workers_lost: 1, queues_over_threshold: 1, firing: 1 };

export async function loadOverview() {
  const ov = await api("GET", `${CONSOLE}/overview`);
  state.units = ov.units;
  state.ruleUnits = ov.rule_units;
  state.overview = ov;
  if (state.tab !== "overview") return ov;
  $("#tiles").replaceChildren(...TILES.map(([key, label]) => {
    const t = ov.tiles[key];
    const bad = BAD[key] && t.value > 0;
    return h("div", { class: `tile${bad ? " bad" : ""}`, "data-key": key },
      h("div", { class: "tile-label" }, label),
      h("div", { class: "tile-value" }, fmt(t.value, t.unit)),
      spark(t.series, { w: 180, hgt: 36, title: `${label}, last ${duration(ov.retention)}` }));
  }));
  $("#overview-note").textContent = `Sampled every ${duration(ov.step)}, kept ${duration(ov.retention)} (observe.retention).`;
  return ov;
}

// -- tasks ---------------------------------------------------------------------------------------
const MAX_ROWS = 300;
const tasksView = { sort: "rate", desc: true, rows: [], open: null, range: 3600 };

function sortValue(r, key) {
  const v = key === "last_failure" ? (r.last_failure ? r.last_failure.at : null) : r[key];
  return v === null || v === undefined ? -Infinity : v;
}

export async function loadTasks() {
  const out = await api("GET", `${CONSOLE}/tasks?window=${$("#task-window").value}`);
  tasksView.rows = out.tasks;
  tasksView.retention = out.retention;
  $("#tasks-note").textContent = `over the last ${duration(out.window)}`;
  renderTasks();
  if (tasksView.open) await loadTaskDetail(tasksView.open);
}

export function renderTasks() {
  const q = $("#task-filter").value.trim().toLowerCase();
  const { sort, desc } = tasksView;
  const rows = tasksView.rows.filter((r) => !q || r.task.toLowerCase().includes(q) || r.queue.toLowerCase().includes(q));
  rows.sort((a, b) => {
    const x = sortValue(a, sort);
    const y = sortValue(b, sort);
    const c = typeof x === "string" ? x.localeCompare(y) : x - y;
    return desc ? -c : c;
  });
  for (const th of document.querySelectorAll("#tasks th")) {
    th.classList.toggle("sorted", th.dataset.key === sort);
    th.classList.toggle("desc", th.dataset.key === sort && desc);
  }
  // a page of rows: a 1,000-name table re-rendered every poll would be most of the page's work
  const total = rows.length;
  rows.length = Math.min(rows.length, MAX_ROWS);
  $("#tasks-more").textContent = total > MAX_ROWS ? `showing ${MAX_ROWS} of ${total}: filter or sort to see others` : "";
  $("#tasks tbody").replaceChildren(...(rows.length ? rows.map((r) => h("tr", {
    "data-task": r.task, class: r.failure_ratio ? "failing" : "", onclick: () => openTask(r.task) },
  h("td", {}, h("a", { href: `#tab=tasks&task=${encodeURIComponent(r.task)}` }, r.task)), h("td", {}, r.queue || "–"),
  h("td", {}, fmt(r.rate, "rate")),
  h("td", { class: r.failure_ratio ? "bad" : "" }, pct(r.failure_ratio), r.failed ? ` (${num(r.failed)})` : ""),
  h("td", {}, pct(r.retry_ratio)), h("td", {}, duration(r.runtime_p50)), h("td", {}, duration(r.runtime_p95)),
  h("td", {}, duration(r.wait_p95)), h("td", {}, num(r.in_flight)),
  h("td", {}, r.last_failure ? [h("code", {}, r.last_failure.exception || "?"), " ", timeAt(r.last_failure.at)] : "")))
    : [h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No tasks seen in this window."))]));
}

function openTask(name) {
  tasksView.open = name;
  history.replaceState(null, "", `#tab=tasks&task=${encodeURIComponent(name)}`);
  loadTaskDetail(name).catch((e) => { $("#task-detail").textContent = String(e.message || e); });
}

export function openTaskFromUrl(name) { if (name) { tasksView.open = name; } }

async function loadTaskDetail(name) {
  const d = await api("GET", `${CONSOLE}/task?task=${encodeURIComponent(name)}&range=${tasksView.range}`);
  const box = $("#task-detail");
  const ranges = [[3600, "1 h"], [21600, "6 h"], [86400, "24 h"]].map(([secs, label]) => h("button", {
    class: `range${tasksView.range === secs ? " active" : ""}`,
    disabled: secs > d.retention + 1 ? "" : null,
    title: secs > d.retention + 1 ? `kept only ${duration(d.retention)} (observe.retention)` : "",
    onclick: () => { tasksView.range = secs; loadTaskDetail(name); } }, label));
  box.replaceChildren(
    h("div", { class: "detail-head" }, h("h2", {}, name),
      h("span", { class: "ranges" }, ranges),
      h("button", { class: "close", onclick: () => { tasksView.open = null; box.hidden = true; history.replaceState(null, "", "#tab=tasks"); } }, "Close")),
    h("p", { class: "muted" }, `${duration(d.range)} in steps of ${duration(d.step)}; history is kept ${duration(d.retention)} (observe.retention).`),
    h("div", { class: "charts" },
      chart(d.times, [{ name: "finished/s", values: d.rate }], { unit: "rate", title: "Rate" }),
      chart(d.times, [{ name: "failed", values: d.failure_ratio }], { unit: "ratio", title: "Failure ratio" }),
      chart(d.times, [{ name: "p50", values: d.runtime_p50 }, { name: "p95", values: d.runtime_p95 }], { unit: "seconds", title: "Runtime" }),
      chart(d.times, [{ name: "p95", values: d.wait_p95 }], { unit: "seconds", title: "Queue wait p95" })),
    h("h3", {}, "Recent failures"),
    d.failures.length ? h("div", { class: "failures" }, d.failures.map((f) => h("details", { class: "failure" },
      h("summary", {}, h("code", {}, f.exception || "?"), " ", f.exception_repr, " on ", f.worker, " ", timeAt(f.at)),
      h("pre", {}, f.traceback || "(no traceback)")))) : h("p", { class: "muted" }, "none kept"),
    h("h3", {}, "Alerts about it"),
    d.alerts.length ? h("ul", {}, d.alerts.map((a) => h("li", {}, h("a", { href: `#tab=alerts&alert=${a.fingerprint}` },
      a.labels.alertname), ` ${a.state}`))) : h("p", { class: "muted" }, "none"));
  box.hidden = false;
}

export function bindTasks() {
  $("#task-filter").addEventListener("input", renderTasks);
  $("#task-window").addEventListener("change", () => loadTasks());
  for (const th of document.querySelectorAll("#tasks th")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      tasksView.desc = tasksView.sort === key ? !tasksView.desc : key !== "task" && key !== "queue";
      tasksView.sort = key;
      renderTasks();
    });
  }
}

// -- workers and queues ------------------------------------------------------------------------
function withSpark(text, values, unit, label) {
  return h("div", { class: "cell-spark" }, h("span", {}, text), spark(values, { w: 90, hgt: 20, title: `${label} (${unit || "count"})` }));
}

export async function loadWorkers() {
  const out = await api("GET", `${CONSOLE}/workers`);
  $("#console-workers tbody").replaceChildren(...(out.workers.length ? out.workers.map((w) => {
    const sr = w.series;
    const hb = w.heartbeat_age === null || w.heartbeat_age === undefined ? "never" : `${duration(w.heartbeat_age)} ago`;
    return h("tr", { class: w.state, "data-worker": w.hostname },
      h("td", {}, w.hostname), h("td", {}, h("span", { class: `tag ${w.state}` }, w.state)),
      h("td", { title: w.last_heartbeat ? new Date(w.last_heartbeat * 1000).toISOString() : "" }, hb),
      h("td", {}, w.pool_size ?? "–"),
      h("td", {}, withSpark(num(w.active), sr.worker_active_tasks, "", "active tasks")),
      h("td", {}, withSpark(num(w.loadavg), sr.worker_loadavg, "", "load average")),
      h("td", {}, withSpark(bytes(w.memory_bytes), sr.worker_memory_bytes, "bytes", "memory")),
      h("td", {}, withSpark(pct(w.cpu_ratio), sr.worker_cpu_ratio, "ratio", "CPU")),
      h("td", {}, (w.queues || []).map((q) => h("span", { class: "chip" }, q))),
      h("td", {}, w.orphaned ? h("b", { class: "bad" }, num(w.orphaned)) : "0",
        w.last_loss ? h("div", { class: "muted" }, `${w.last_loss.cause} `, timeAt(w.last_loss.at)) : ""));
  }) : [h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No worker seen yet."))]));
}

export async function loadQueues() {
  const out = await api("GET", `${CONSOLE}/queues`);
  $("#queues tbody").replaceChildren(...(out.queues.length ? out.queues.map((q) => h("tr", { "data-queue": q.queue },
    h("td", {}, q.queue),
    h("td", {}, withSpark(num(q.queue_length), q.series.queue_length, "", "length")),
    h("td", {}, withSpark(num(q.queue_consumers), q.series.queue_consumers, "", "consumers")),
    h("td", {}, withSpark(duration(q.queue_waiting_p95_seconds), q.series.queue_waiting_p95_seconds, "seconds", "waiting p95")),
    h("td", {}, duration(q.queue_waiting_oldest_seconds)),
    h("td", {}, q.tasks.map((t) => h("span", { class: "chip" }, t))))) : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No queue sampled yet (sampler.queues)."))]));
}
