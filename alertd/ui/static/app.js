// alertd's web page: polls the same API the CLI uses. No framework, no build step.
const POLL_MS = 5000;
const $ = (sel) => document.querySelector(sel);
const state = { token: localStorage.getItem("alertd-token") || "", me: null, tab: "alerts", lastEvents: null };

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return el;
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  // Alertmanager's v2 errors are a JSON string; alertd's own are {"error": "..."}
  if (!res.ok) throw new Error((typeof data === "string" ? data : data && data.error) || `${res.status} ${res.statusText}`);
  return data;
}

function showError(err) {
  const box = $("#error");
  if (!err) { box.hidden = true; return; }
  box.textContent = String(err.message || err);
  box.hidden = false;
}

const ZERO = "0001-01-01T00:00:00.000Z";
function ago(iso) {
  if (!iso || iso === ZERO) return "";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  const abs = Math.abs(s);
  const text = abs < 60 ? `${Math.round(abs)}s` : abs < 3600 ? `${Math.round(abs / 60)}m`
    : abs < 86400 ? `${Math.round(abs / 3600)}h` : `${Math.round(abs / 86400)}d`;
  return s >= 0 ? `${text} ago` : `in ${text}`;
}
const time = (iso) => h("time", { datetime: iso, title: new Date(iso).toLocaleString() }, ago(iso));
const fromEpoch = (t) => (t ? new Date(t * 1000).toISOString() : "");
const chip = (k, v) => h("span", { class: "chip" }, `${k}="${v}"`);
const canWrite = () => Boolean(state.me && state.me.can_silence);

function matcherText(m) {
  const op = m.isRegex ? (m.isEqual === false ? "!~" : "=~") : (m.isEqual === false ? "!=" : "=");
  return `${m.name}${op}"${m.value}"`;
}

// -- alerts ---------------------------------------------------------------------------------
function alertRow(a) {
  const st = a.status || {};
  const why = (st.silencedBy || []).length ? h("span", { class: "tag silenced" }, `silenced by ${st.silencedBy.join(", ")}`)
    : (st.inhibitedBy || []).length ? h("span", { class: "tag inhibited" }, `inhibited by ${st.inhibitedBy.length}`)
    : (st.mutedBy || []).length ? h("span", { class: "tag muted" }, `muted: ${st.mutedBy.join(", ")}`)
    : h("span", { class: "tag firing" }, "firing");
  const labels = Object.entries(a.labels).filter(([k]) => k !== "alertname").map(([k, v]) => chip(k, v));
  const details = h("div", { class: "explain", hidden: "" });
  const explainButton = h("button", { class: "explain-this", onclick: () => toggleExplain(a.fingerprint, details) }, "Why here?");
  const actions = canWrite() && !(st.silencedBy || []).length
    ? h("button", { class: "silence-this", onclick: () => openSilenceForm({ labels: a.labels }) }, "Silence this") : "";
  return h("div", { class: "alert", "data-fingerprint": a.fingerprint },
    h("div", { class: "alert-head" }, h("strong", {}, a.labels.alertname || "(no name)"), why, " since ", time(a.startsAt),
      h("span", { class: "actions" }, explainButton, actions)),
    h("div", { class: "summary" }, (a.annotations && a.annotations.summary) || ""),
    // held as one alert by the rule's `flapping` option: say so, or the quiet page looks wrong
    a.annotations && a.annotations.flapping ? h("div", { class: "flapping" }, a.annotations.flapping) : "",
    h("div", { class: "labels" }, labels), details);
}

// Route, receivers, timers, silences and the last notification of one alert (the explain API).
const openExplains = new Set();
// An alert's generatorURL (/#alert=FINGERPRINT) opens the page on that alert, explained.
const linked = /^#alert=([0-9A-Za-z]+)$/.exec(location.hash);
if (linked) openExplains.add(linked[1]);
async function toggleExplain(fingerprint, box) {
  if (!box.hidden) { box.hidden = true; openExplains.delete(fingerprint); return; }
  openExplains.add(fingerprint);
  await renderExplain(fingerprint, box);
}
async function renderExplain(fingerprint, box) {
  const ex = await api("GET", `/api/alertd/v1/alerts/${fingerprint}/explain`);
  box.replaceChildren(
    ...ex.routes.map((r) => h("div", { class: "route" },
      h("div", {}, h("b", {}, `→ ${r.receiver}`), " via ", h("code", {}, r.path.join(" → "))),
      h("div", { class: "muted" }, `group ${JSON.stringify(r.group_labels)} · wait ${r.group_wait}s, interval ${r.group_interval}s, repeat ${r.repeat_interval}s`),
      r.muted_by.length ? h("div", {}, `muted: ${r.muted_by.join(", ")}`) : "",
      h("div", {}, r.last_notification
        ? ["last notified ", time(fromEpoch(r.last_notification.at)), ` (${r.last_notification.reason})`]
        : "not notified yet"),
      r.next_flush ? h("div", { class: "muted" }, "next check ", time(fromEpoch(r.next_flush))) : "")),
    ex.silences.length ? h("div", {}, "silenced by ", ex.silences.map((s) => h("code", {}, `${s.id} (${s.comment}) `))) : "",
    ex.inhibited_by.length ? h("div", {}, `inhibited by ${ex.inhibited_by.length} alert(s)`) : "");
  box.hidden = false;
}

async function loadAlerts() {
  const [groups, all] = await Promise.all([api("GET", "/api/v2/alerts/groups"), api("GET", "/api/alertd/v1/alerts")]);
  const box = $("#alert-groups");
  box.replaceChildren();
  let firing = 0;
  for (const g of groups) {
    firing += g.alerts.length;
    box.append(h("div", { class: "group card" },
      h("div", { class: "group-head" }, h("span", { class: "receiver" }, `→ ${g.receiver.name}`),
        Object.entries(g.labels).map(([k, v]) => chip(k, v))),
      g.alerts.map(alertRow)));
  }
  if (!groups.length) box.append(h("p", { class: "ok" }, "Nothing is firing."));
  for (const fp of openExplains) {
    const el = box.querySelector(`.alert[data-fingerprint="${fp}"] .explain`);
    if (el) await renderExplain(fp, el).catch(showError);
  }
  if (linked && !linked.shown) {
    const el = box.querySelector(`.alert[data-fingerprint="${linked[1]}"]`);
    if (el) { el.scrollIntoView(); el.classList.add("linked"); linked.shown = true; }
  }
  $("#count-alerts").textContent = firing ? String(firing) : "";
  const pending = all.filter((a) => a.state === "pending");
  $("#pending").replaceChildren(...(pending.length ? pending.map((a) => h("div", { class: "alert pending" },
    h("strong", {}, a.labels.alertname), " pending since ", time(a.startsAt),
    a.value !== null ? ` (value ${Number(a.value).toPrecision(4)})` : "",
    h("div", { class: "labels" }, Object.entries(a.labels).filter(([k]) => k !== "alertname").map(([k, v]) => chip(k, v))))) : ["none"]));
}

// -- silences -------------------------------------------------------------------------------
function openSilenceForm({ labels, silence } = {}) {
  switchTab("silences");
  const form = $("#silence-form");
  form.hidden = false;
  $("#silence-id").value = silence ? silence.id : "";
  $("#silence-form-title").textContent = silence ? "Edit silence (saving replaces it)" : "New silence";
  $("#silence-save").textContent = silence ? "Save" : "Create silence";
  const matchers = silence ? silence.matchers.map(matcherText)
    : Object.entries(labels || {}).map(([k, v]) => `${k}="${v}"`);
  $("#silence-matchers").value = matchers.join("\n");
  $("#silence-author").value = (silence && silence.createdBy) || (state.me && state.me.name) || "";
  $("#silence-comment").value = silence ? silence.comment : "";
  $("#preview").replaceChildren();
  $("#silence-comment").focus();
}

function formMatchers() {
  return $("#silence-matchers").value.split("\n").map((s) => s.trim()).filter(Boolean);
}

function durationSeconds(text) {
  const m = String(text).trim().match(/^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?$/);
  if (!m) throw new Error(`duration: ${text} is not like 30m, 2h or 1d`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2] || "s"];
}

async function preview() {
  const out = await api("POST", "/api/alertd/v1/silences/preview", { matchers: formMatchers() });
  const box = $("#preview");
  box.replaceChildren(
    h("p", { class: out.matches_everything ? "error" : "" },
      out.matches_everything ? "These matchers match every alert." : `Would silence ${out.count} firing alert(s) now:`),
    ...out.alerts.map((a) => h("div", { class: "alert" }, h("strong", {}, a.labels.alertname), " ",
      Object.entries(a.labels).filter(([k]) => k !== "alertname").map(([k, v]) => chip(k, v)))));
}

async function saveSilence(ev) {
  ev.preventDefault();
  const now = Date.now();
  const body = {
    matchers: formMatchers(),
    startsAt: new Date(now).toISOString(),
    endsAt: new Date(now + durationSeconds($("#silence-duration").value) * 1000).toISOString(),
    createdBy: $("#silence-author").value,
    comment: $("#silence-comment").value,
  };
  const id = $("#silence-id").value;
  if (id) {
    // edit by recreate: expire the old one and create the new one (Alertmanager's own rule)
    await api("DELETE", `/api/v2/silence/${id}`);
  }
  await api("POST", "/api/v2/silences", body);
  $("#silence-form").hidden = true;
  await refresh();
}

async function loadSilences() {
  const silences = await api("GET", "/api/v2/silences");
  const showExpired = $("#show-expired").checked;
  const rows = silences.filter((s) => showExpired || s.status.state !== "expired");
  $("#count-silences").textContent = String(silences.filter((s) => s.status.state === "active").length || "");
  $("#silences tbody").replaceChildren(...rows.map((s) => h("tr", { "data-id": s.id, class: s.status.state },
    h("td", {}, h("span", { class: `tag ${s.status.state}` }, s.status.state)),
    h("td", {}, s.matchers.map((m) => h("code", {}, matcherText(m), " "))),
    h("td", {}, time(s.endsAt)),
    h("td", {}, s.createdBy),
    h("td", {}, s.comment),
    h("td", {}, canWrite() && s.status.state !== "expired" ? [
      h("button", { class: "edit", onclick: () => openSilenceForm({ silence: s }) }, "Edit"),
      h("button", { class: "expire", onclick: async () => { await api("DELETE", `/api/v2/silence/${s.id}`); await refresh(); } }, "Expire"),
    ] : ""))));
}

function intervalText(iv) {
  const parts = [];
  if (iv.weekdays && iv.weekdays.length) parts.push(iv.weekdays.join(", "));
  if (iv.days_of_month && iv.days_of_month.length) parts.push(`days ${iv.days_of_month.join(", ")}`);
  if (iv.months && iv.months.length) parts.push(iv.months.join(", "));
  if (iv.times && iv.times.length) parts.push(iv.times.map((t) => `${t.start_time}–${t.end_time}`).join(", "));
  return `${parts.join(" ") || "always"} (${iv.location || "UTC"})`;
}

async function loadMaintenance() {
  const windows = await api("GET", "/api/alertd/v1/maintenance");
  const rows = windows.filter((m) => $("#show-expired").checked || m.state !== "expired");
  $("#maintenance tbody").replaceChildren(...rows.map((m) => h("tr", { "data-id": m.id, class: m.state },
    h("td", {}, h("span", { class: `tag ${m.state}` }, m.state)),
    h("td", {}, m.matchers.map((x) => h("code", {}, matcherText(x), " "))),
    h("td", {}, (m.time_intervals || []).map((iv) => h("div", {}, intervalText(iv)))),
    h("td", {}, m.created_by), h("td", {}, m.comment),
    h("td", {}, canWrite() && m.state !== "expired" ? h("button", { class: "expire", onclick: async () => {
      await api("DELETE", `/api/alertd/v1/maintenance/${m.id}`); await refresh(); } }, "Expire") : ""))));
}

// -- rules, history, health -------------------------------------------------------------------
async function loadRules() {
  const out = await api("GET", "/api/alertd/v1/rules");
  $("#count-problems").textContent = out.problems.length ? String(out.problems.length) : "";
  $("#problems").replaceChildren(...out.problems.map((p) => h("div", { class: "error" },
    `${p.file}:${p.line ?? ""}: ${p.field ? p.field + ": " : ""}${p.message}`)));
  $("#rules tbody").replaceChildren(...out.rules.map((r) => h("tr", { class: r.firing ? "firing" : "" },
    h("td", {}, r.group), h("td", {}, h("strong", {}, r.name)), h("td", {}, r.kind + (r.metric ? ` (${r.metric})` : "")),
    h("td", {}, h("span", { class: `tag ${r.health}` }, r.health), r.last_error || ""),
    h("td", {}, (r.values || []).slice(0, 3).map((v) => h("div", {}, Object.values(v.labels).join(" "), " ",
      h("b", {}, v.value === null ? "n/a" : Number(v.value).toPrecision(3))))),
    h("td", {}, String(r.pending)), h("td", {}, String(r.firing)),
    h("td", {}, r.last_evaluation ? time(fromEpoch(r.last_evaluation)) : "never"))));
}

async function loadHistory() {
  const entries = await api("GET", "/api/alertd/v1/history?limit=50");
  $("#history tbody").replaceChildren(...entries.map((e) => h("tr", { class: e.kind },
    h("td", {}, time(e.time)), h("td", {}, h("span", { class: `tag ${e.kind}` }, e.kind)), h("td", {}, e.receiver),
    h("td", {}, (e.alertnames || []).join(", ")), h("td", {}, e.reason), h("td", {}, e.outcome), h("td", {}, e.author))));
}

async function loadHealth() {
  const hl = await api("GET", "/api/alertd/v1/health");
  const s = hl.stream;
  let rate = "";
  if (state.lastEvents) {
    const dt = (Date.now() - state.lastEvents.at) / 1000;
    rate = `${((s.events - state.lastEvents.events) / dt).toFixed(1)}/s`;
  }
  state.lastEvents = { events: s.events, at: Date.now() };
  const online = hl.workers.filter((w) => w.state === "online").length;
  const ind = $("#stream");
  ind.className = `stream ${s.connected ? "up" : "down"}`;
  ind.textContent = s.connected ? `stream up · ${online} workers` : "stream DOWN";
  const facts = { "Broker": s.broker, "Transport": s.transport, "Connected": s.connected ? "yes" : `no (${s.last_error})`,
    "Last event": s.last_event_at ? ago(fromEpoch(s.last_event_at)) : "none yet", "Ingest rate": rate || "…",
    "Events": s.events, "Malformed skipped": s.malformed, "Reconnects": s.reconnects, "Workers online": online,
    "Tasks in flight": hl.observer.tasks_tracked, "Version": hl.version, "Replica": hl.replica };
  $("#health").replaceChildren(...Object.entries(facts).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
  $("#workers tbody").replaceChildren(...hl.workers.map((w) => h("tr", { class: w.state },
    h("td", {}, w.hostname), h("td", {}, h("span", { class: `tag ${w.state}` }, w.state)),
    h("td", {}, w.last_heartbeat ? time(fromEpoch(w.last_heartbeat)) : ""), h("td", {}, String(w.active)),
    h("td", {}, String(w.pool_size ?? "")), h("td", {}, String(w.processed)),
    h("td", {}, w.memory_bytes ? `${(w.memory_bytes / 1048576).toFixed(0)} MiB` : ""),
    h("td", {}, lossText(w.last_loss)), h("td", { class: w.clock_skewed ? "skewed" : "" }, clockText(w)))));
}

// The worker's last loss or shutdown: how, when, and the tasks it took (alertd's orphaned tasks).
function lossText(loss) {
  if (!loss) return "";
  const tasks = loss.orphaned ? ` · ${loss.orphaned} task(s), ${loss.redelivered} redelivered` : "";
  return `${loss.cause} ${time(fromEpoch(loss.at))}${tasks}`;
}

// Its clock against alertd's: shown when further off than observe.max_clock_skew, never a reason to drop it.
function clockText(w) {
  if (w.clock_offset === null || w.clock_offset === undefined || !w.clock_skewed) return "";
  const s = Math.abs(w.clock_offset);
  return `${s >= 120 ? `${(s / 60).toFixed(0)} min` : `${s.toFixed(1)} s`} ${w.clock_offset > 0 ? "ahead" : "behind"}`;
}

// -- shell ----------------------------------------------------------------------------------
function switchTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === tab);
  for (const p of document.querySelectorAll(".panel")) p.hidden = p.id !== `tab-${tab}`;
}

async function loadMe() {
  state.me = await api("GET", "/api/alertd/v1/whoami");
  $("#whoami").textContent = state.me.role ? `${state.me.name} (${state.me.role})` : "not signed in";
  for (const el of document.querySelectorAll(".write")) {
    if (el.id === "silence-form") { if (!canWrite()) el.hidden = true; } else el.hidden = !canWrite();
  }
}

async function refresh() {
  try {
    await loadMe();
    await Promise.all([loadAlerts(), loadSilences(), loadMaintenance(), loadRules(), loadHistory(), loadHealth()]);
    showError(null);
  } catch (err) {
    showError(err);
  }
}

for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => switchTab(b.dataset.tab));
$("#token").value = state.token;
$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.token = $("#token").value.trim();
  localStorage.setItem("alertd-token", state.token);
  refresh();
});
$("#silence-new").addEventListener("click", () => openSilenceForm({}));
$("#silence-cancel").addEventListener("click", () => { $("#silence-form").hidden = true; });
$("#silence-preview").addEventListener("click", () => preview().catch(showError));
$("#silence-form").addEventListener("submit", (ev) => saveSilence(ev).catch(showError));
$("#show-expired").addEventListener("change", () => Promise.all([loadSilences(), loadMaintenance()]).catch(showError));
refresh();
setInterval(refresh, POLL_MS);
