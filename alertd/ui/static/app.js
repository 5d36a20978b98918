// alertd's web page: polls the same API the CLI uses. No framework, no build step.
import { $, api, state, showError, canWrite, CONSOLE } from "./core.js";
import { h, fmt, num, time, timeAt, ago, spark, duration } from "./fmt.js";
import { loadOverview, loadTasks, loadWorkers, loadQueues, bindTasks, openTaskFromUrl } from "./console.js";
import { loadAcks, ackTag, ackButton } from "./ack.js";

const POLL_MS = 5000;
const chip = (k, v) => h("span", { class: "chip", "data-label": k }, `${k}="${v}"`);

function matcherText(m) {
  const op = m.isRegex ? (m.isEqual === false ? "!~" : "=~") : (m.isEqual === false ? "!=" : "=");
  return `${m.name}${op}"${m.value}"`;
}

// -- the URL: tab, filter, grouping and a linked alert live in the hash (or the query) ---------
function urlParams() {
  const out = new URLSearchParams(location.search);
  for (const [k, v] of new URLSearchParams(location.hash.slice(1))) out.set(k, v);
  return out;
}
function saveUrl() {
  const p = new URLSearchParams();
  p.set("tab", state.tab);
  if (state.filter) p.set("filter", state.filter);
  if ($("#group-by").value) p.set("group", $("#group-by").value);
  if (!$("#show-silenced").checked) p.set("silenced", "false");
  if (!$("#show-inhibited").checked) p.set("inhibited", "false");
  history.replaceState(null, "", `${location.pathname}#${p.toString()}`);
}

// -- the filter bar: alertd's matcher syntax, split on blanks and commas outside quotes ----------
const MATCHER = /^([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^"\s]*))$/;
function splitFilter(text) {
  const out = [];
  let cur = "";
  let quoted = false;
  for (const ch of text.trim().replace(/^\{|\}$/g, "")) {
    if (ch === '"' && !cur.endsWith("\\")) quoted = !quoted;
    if (!quoted && (ch === " " || ch === ",")) { if (cur) out.push(cur); cur = ""; continue; }
    cur += ch;
  }
  if (cur) out.push(cur);
  return out;
}
function parseMatcher(text) {
  const m = MATCHER.exec(text);
  if (!m) return null;
  const value = m[3] !== undefined ? m[3].replace(/\\(.)/g, "$1") : m[4];
  const op = m[2];
  let test;
  if (op === "=~" || op === "!~") {
    let re;
    try { re = new RegExp(`^(?:${value})$`); } catch { return null; }
    test = (v) => re.test(v ?? "") === (op === "=~");
  } else test = (v) => ((v ?? "") === value) === (op === "=");
  return { name: m[1], op, value, test };
}
const labelsMatch = (matchers, labels) => matchers.every((m) => m.test(labels[m.name]));

// Autocompletion: label names, then the values seen for the name typed.
const known = { names: new Map() };
function learnLabels(alerts) {
  known.names = new Map();
  for (const a of alerts) for (const [k, v] of Object.entries(a.labels)) {
    if (!known.names.has(k)) known.names.set(k, new Set());
    known.names.get(k).add(v);
  }
}
function suggestions(text) {
  const last = /(\S*)$/.exec(text)[1];
  const m = /^([A-Za-z_][A-Za-z0-9_]*)(=~|!~|!=|=)"?([^"]*)$/.exec(last);
  if (m) {
    const values = [...(known.names.get(m[1]) || [])].filter((v) => v.startsWith(m[3])).sort();
    return values.slice(0, 12).map((v) => `${m[1]}${m[2]}${/^[\w.:@/-]*$/.test(v) ? v : JSON.stringify(v)}`);
  }
  return [...known.names.keys()].filter((k) => k.startsWith(last)).sort().slice(0, 12).map((k) => `${k}=`);
}
function showSuggestions() {
  const input = $("#filter");
  const list = $("#suggest");
  const items = suggestions(input.value);
  list.replaceChildren(...items.map((s) => h("li", { role: "option", onmousedown: (ev) => { ev.preventDefault(); complete(s); } }, s)));
  list.hidden = !items.length || document.activeElement !== input;
}
function complete(s) {
  const input = $("#filter");
  input.value = input.value.replace(/(\S*)$/, s) + (s.endsWith("=") ? "" : " ");
  input.focus();
  showSuggestions();
  if (!s.endsWith("=")) applyFilter();
}
// The filter applies on Enter, a completed value or leaving the field: a poll meanwhile keeps the last one.
function applyFilter() {
  state.filter = $("#filter").value.trim();
  saveUrl();
  loadAlerts().then(() => showError(null)).catch(showError);
}

// -- alerts: one card per alert, all its receivers on it ----------------------------------------
const collapsed = new Set();
const openExplains = new Set();
const linked = { fp: urlParams().get("alert"), shown: false };
if (linked.fp) openExplains.add(linked.fp);

function valueChart(fp) {
  const v = state.alertValues && state.alertValues.alerts[fp];
  if (!v) return "";
  const threshold = v.above ?? v.below;
  const last = v.value;
  const values = [...v.values];
  if (values.length && values[values.length - 1] === null) values[values.length - 1] = last;  // not sampled yet
  const unit = v.stat === "count" ? "" : v.unit;
  const what = `${v.metric}${v.stat ? ` ${v.stat}` : ""}`;
  return h("div", { class: "why" }, spark(values, { threshold, w: 160, hgt: 28, title: `${what} over the last hour` }),
    h("span", {}, `${what} ${fmt(last, unit)}`, threshold !== null && threshold !== undefined
      ? ` (${v.above !== null && v.above !== undefined ? "above" : "below"} ${fmt(threshold, unit)})` : ""));
}

function alertCard(a) {
  const st = a.status || {};
  const acked = ackTag(a.fingerprint);
  const why = acked || ((st.silencedBy || []).length ? h("span", { class: "tag silenced" }, `silenced by ${st.silencedBy.join(", ")}`)
    : (st.inhibitedBy || []).length ? h("span", { class: "tag inhibited" }, `inhibited by ${st.inhibitedBy.length}`)
    : (st.mutedBy || []).length ? h("span", { class: "tag muted" }, `muted: ${st.mutedBy.join(", ")}`)
    : h("span", { class: "tag firing" }, "firing"));
  const labels = Object.entries(a.labels).filter(([k]) => k !== "alertname").map(([k, v]) => chip(k, v));
  const details = h("div", { class: "explain", hidden: "" });
  const explainButton = h("button", { class: "explain-this", onclick: () => toggleExplain(a.fingerprint, details) }, "Why here?");
  const actions = canWrite() && !(st.silencedBy || []).length
    ? h("button", { class: "silence-this", onclick: () => openSilenceForm({ labels: a.labels }) }, "Silence this") : "";
  return h("div", { class: "alert", "data-fingerprint": a.fingerprint },
    h("div", { class: "alert-head" }, h("strong", {}, a.labels.alertname || "(no name)"), why, " since ", time(a.startsAt),
      h("span", { class: "receivers" }, (a.receivers || []).map((r) => h("span", { class: "receiver" }, `→ ${r.name}`))),
      h("span", { class: "actions" }, explainButton, ackButton([a], refresh), actions)),
    h("div", { class: "summary" }, (a.annotations && a.annotations.summary) || ""),
    // held as one alert by the rule's `flapping` option: say so, or the quiet page looks wrong
    a.annotations && a.annotations.flapping ? h("div", { class: "flapping" }, a.annotations.flapping) : "",
    valueChart(a.fingerprint),
    h("div", { class: "labels" }, labels), details);
}

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
      h("div", { class: "muted" }, `group ${JSON.stringify(r.group_labels)} · wait ${duration(r.group_wait)}, interval ${duration(r.group_interval)}, repeat ${duration(r.repeat_interval)}`),
      r.muted_by.length ? h("div", {}, `muted: ${r.muted_by.join(", ")}`) : "",
      h("div", {}, r.last_notification
        ? ["last notified ", timeAt(r.last_notification.at), ` (${r.last_notification.reason})`]
        : "not notified yet"),
      r.next_flush ? h("div", { class: "muted" }, "next check ", timeAt(r.next_flush)) : "")),
    ex.silences.length ? h("div", {}, "silenced by ", ex.silences.map((s) => h("code", {}, `${s.id} (${s.comment}) `))) : "",
    ex.inhibited_by.length ? h("div", {}, `inhibited by ${ex.inhibited_by.length} alert(s)`) : "");
  box.hidden = false;
}

function groupOf(a, byRoute, by) {
  if (by === "-") return { key: "", head: [] };
  if (by) return { key: `${by}=${a.labels[by] ?? ""}`, head: [a.labels[by] === undefined ? h("span", { class: "muted" }, `no ${by}`) : chip(by, a.labels[by])] };
  const g = byRoute.get(a.fingerprint);
  if (!g) return { key: "(no route group)", head: [h("span", { class: "muted" }, "not routed yet")] };
  return { key: g.key, head: Object.entries(g.labels).map(([k, v]) => chip(k, v)) };
}

async function loadAlerts() {
  const params = new URLSearchParams();
  const words = splitFilter(state.filter || "");
  const matchers = words.map(parseMatcher);
  const bad = words.filter((_, i) => !matchers[i]);
  $("#filter").classList.toggle("invalid", bad.length > 0);
  // the server parses the filter with alertd's own matcher syntax; it says what is wrong
  for (const w of words) params.append("filter", w);
  if (!$("#show-silenced").checked) params.set("silenced", "false");
  if (!$("#show-inhibited").checked) params.set("inhibited", "false");
  const [alerts, groups, all, values] = await Promise.all([
    api("GET", `/api/v2/alerts?${params}`), api("GET", "/api/v2/alerts/groups"),
    api("GET", "/api/alertd/v1/alerts"), api("GET", `${CONSOLE}/alert-values`), loadAcks()]);
  state.alertValues = values;
  learnLabels(all);
  const by = $("#group-by").value;
  const select = $("#group-by");
  const names = [...known.names.keys()].sort();
  const have = [...select.options].map((o) => o.value).slice(2);
  if (have.join() !== names.join()) {
    select.replaceChildren(h("option", { value: "" }, "route group"), h("option", { value: "-" }, "nothing"),
      ...names.map((n) => h("option", { value: n }, n)));
    select.value = by;
  }
  // an alert routed to several receivers is in one group per receiver: its first route group
  const byRoute = new Map();
  for (const g of groups) {
    const key = JSON.stringify(Object.entries(g.labels).sort());
    for (const a of g.alerts) if (!byRoute.has(a.fingerprint)) byRoute.set(a.fingerprint, { key, labels: g.labels });
  }
  const cards = new Map();
  for (const a of alerts.filter((x) => x.status.state !== "unprocessed")) {
    const g = groupOf(a, byRoute, by);
    if (!cards.has(g.key)) cards.set(g.key, { head: g.head, alerts: [] });
    cards.get(g.key).alerts.push(a);
  }
  const box = $("#alert-groups");
  box.replaceChildren();
  for (const [key, g] of [...cards.entries()].sort()) {
    const closed = collapsed.has(key);
    const suppressed = g.alerts.filter((a) => a.status.state === "suppressed").length;
    box.append(h("div", { class: `group card${closed ? " collapsed" : ""}`, "data-group": key },
      h("div", { class: "group-head", onclick: () => { if (collapsed.has(key)) collapsed.delete(key); else collapsed.add(key); loadAlerts().catch(showError); } },
        h("span", { class: "fold" }, closed ? "▸" : "▾"), g.head,
        h("span", { class: "muted" }, `${g.alerts.length} alert${g.alerts.length === 1 ? "" : "s"}${suppressed ? `, ${suppressed} suppressed` : ""}`),
        ackButton(g.alerts, refresh, "Ack group")),
      closed ? "" : g.alerts.map(alertCard)));
  }
  if (!cards.size) box.append(h("p", { class: "ok" }, words.length ? "No alert matches the filter." : "Nothing is firing."));
  for (const fp of openExplains) {
    const el = box.querySelector(`.alert[data-fingerprint="${fp}"] .explain`);
    if (el) await renderExplain(fp, el).catch(showError);
  }
  if (linked.fp && !linked.shown) {
    const el = box.querySelector(`.alert[data-fingerprint="${linked.fp}"]`);
    if (el) { el.scrollIntoView(); el.classList.add("linked"); linked.shown = true; }
  }
  const firing = all.filter((a) => a.state === "firing").length;
  $("#count-alerts").textContent = firing ? String(firing) : "";
  const ok = matchers.filter(Boolean);
  const pending = all.filter((a) => a.state === "pending" && labelsMatch(ok, a.labels));
  $("#pending").replaceChildren(...(pending.length ? pending.map((a) => h("div", { class: "alert pending", "data-fingerprint": a.fingerprint },
    h("strong", {}, a.labels.alertname), " pending since ", time(a.startsAt),
    a.value !== null ? ` (value ${fmt(a.value, (state.alertValues.alerts[a.fingerprint] || {}).unit)})` : "",
    valueChart(a.fingerprint),
    h("div", { class: "labels" }, Object.entries(a.labels).filter(([k]) => k !== "alertname").map(([k, v]) => chip(k, v))))) : ["none"]));
}

// -- silences and maintenance windows (silences that start later) -------------------------------
function openSilenceForm({ labels, silence, maintenance } = {}) {
  switchTab("silences");
  const form = $("#silence-form");
  form.hidden = false;
  $("#silence-id").value = silence ? silence.id : "";
  $("#silence-form-title").textContent = silence ? "Edit silence (saving replaces it)" : maintenance ? "New maintenance window" : "New silence";
  $("#silence-save").textContent = silence ? "Save" : maintenance ? "Schedule window" : "Create silence";
  const matchers = silence ? silence.matchers.map(matcherText)
    : Object.entries(labels || {}).map(([k, v]) => `${k}="${v}"`);
  $("#silence-matchers").value = matchers.join("\n");
  $("#silence-starts").value = silence && new Date(silence.startsAt) > new Date() ? localInput(new Date(silence.startsAt))
    : maintenance ? localInput(nextHour()) : "";
  $("#silence-author").value = (silence && silence.createdBy) || (state.me && state.me.name) || "";
  $("#silence-comment").value = silence ? silence.comment : "";
  $("#preview").replaceChildren();
  (maintenance ? $("#silence-matchers") : $("#silence-comment")).focus();
}
const pad = (n) => String(n).padStart(2, "0");
const localInput = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
function nextHour() { const d = new Date(); d.setMinutes(60, 0, 0); return d; }

function formMatchers() {
  return $("#silence-matchers").value.split("\n").map((s) => s.trim()).filter(Boolean);
}

function durationSeconds(text) {
  const m = String(text).trim().match(/^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?$/);
  if (!m) throw new Error(`duration: ${text} is not like 30m, 2h or 1d`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2] || "s"];
}

// Starts: empty or "now", "+30m" (from now), or a date and time in the browser's zone.
function startTime(text, now) {
  const t = String(text).trim();
  if (!t || t === "now") return now;
  if (t.startsWith("+")) return now + durationSeconds(t.slice(1)) * 1000;
  const m = t.match(/^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d)(?::(\d\d))?$/);
  if (!m) throw new Error(`starts: ${t} is not like now, +30m or 2026-12-24 22:00`);
  return new Date(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0)).getTime();
}

async function preview() {
  const out = await api("POST", "/api/alertd/v1/silences/preview", { matchers: formMatchers() });
  const box = $("#preview");
  const later = startTime($("#silence-starts").value, Date.now()) > Date.now() + 1000;
  box.replaceChildren(
    h("p", { class: out.matches_everything ? "error" : "" },
      out.matches_everything ? "These matchers match every alert."
        : `Would silence ${out.count} firing alert(s) now${out.pending_count ? ` and ${out.pending_count} pending` : ""}${later ? " (it starts later: these are the alerts it would cover today)" : ""}:`),
    ...[...out.alerts, ...(out.pending || [])].map((a) => h("div", { class: "alert" }, h("strong", {}, a.labels.alertname), " ",
      Object.entries(a.labels).filter(([k]) => k !== "alertname").map(([k, v]) => chip(k, v)))));
}

async function saveSilence(ev) {
  ev.preventDefault();
  const now = Date.now();
  const starts = startTime($("#silence-starts").value, now);
  const body = {
    matchers: formMatchers(),
    startsAt: new Date(starts).toISOString(),
    endsAt: new Date(starts + durationSeconds($("#silence-duration").value) * 1000).toISOString(),
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
    h("td", {}, h("span", { class: `tag ${s.status.state}` }, s.status.state === "pending" ? "scheduled" : s.status.state)),
    h("td", {}, s.matchers.map((m) => h("code", {}, matcherText(m), " "))),
    h("td", {}, time(s.startsAt)),
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

// Recurring windows: Alertmanager's time interval, in a zone (POST /api/alertd/v1/maintenance).
function openWindowForm() {
  const form = $("#mw-form");
  form.hidden = false;
  $("#mw-location").value = $("#mw-location").value || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  $("#mw-matchers").focus();
}
function windowBody() {
  const list = (text) => text.split(",").map((x) => x.trim()).filter(Boolean);
  const interval = { location: $("#mw-location").value.trim() || "UTC" };
  const weekdays = list($("#mw-weekdays").value);
  if (weekdays.length) interval.weekdays = weekdays;
  const times = list($("#mw-times").value).map((t) => {
    const m = t.match(/^(\d\d:\d\d)\s*[-–]\s*(\d\d:\d\d)$/);
    if (!m) throw new Error(`times: ${t} is not like 02:00-04:00`);
    return { start_time: m[1], end_time: m[2] };
  });
  if (times.length) interval.times = times;
  const matchers = $("#mw-matchers").value.split("\n").map((x) => x.trim()).filter(Boolean);
  return { matchers, time_intervals: [interval], comment: $("#mw-comment").value, createdBy: (state.me && state.me.name) || "" };
}
async function previewWindow() {
  const out = await api("POST", "/api/alertd/v1/silences/preview", { matchers: windowBody().matchers });
  $("#mw-preview-out").replaceChildren(h("p", { class: out.matches_everything ? "error" : "" }, out.matches_everything
    ? "These matchers match every alert." : `Matches ${out.count} firing alert(s) now (silenced only while the window is on).`));
}
async function saveWindow(ev) {
  ev.preventDefault();
  await api("POST", "/api/alertd/v1/maintenance", windowBody());
  $("#mw-form").hidden = true;
  await refresh();
}

// -- rules, history, health -------------------------------------------------------------------
async function loadRules() {
  const out = await api("GET", "/api/alertd/v1/rules");
  $("#count-problems").textContent = out.problems.length ? String(out.problems.length) : "";
  if (state.tab !== "rules") return;
  $("#problems").replaceChildren(...out.problems.map((p) => h("div", { class: "error" },
    `${p.file}:${p.line ?? ""}: ${p.field ? p.field + ": " : ""}${p.message}`)));
  $("#rules tbody").replaceChildren(...out.rules.map((r) => {
    const unit = state.ruleUnits[`${r.group}/${r.name}`] ?? state.units[r.metric] ?? "";
    return h("tr", { class: r.firing ? "firing" : "" },
      h("td", {}, r.group), h("td", {}, h("strong", {}, r.name)), h("td", {}, r.kind + (r.metric ? ` (${r.metric})` : "")),
      h("td", {}, h("span", { class: `tag ${r.health}` }, r.health), r.last_error || ""),
      h("td", {}, (r.values || []).slice(0, 3).map((v) => h("div", { class: "value" }, Object.values(v.labels).join(" "), " ",
        h("b", { title: v.value === null ? "" : String(v.value) }, v.value === null ? "n/a" : fmt(v.value, unit))))),
      h("td", {}, String(r.pending)), h("td", {}, String(r.firing)),
      h("td", {}, r.last_evaluation ? timeAt(r.last_evaluation) : "never"));
  }));
}

// Each beat entry (docs/periodic.md): its schedule in words, next expected run, last run, state.
const PERIODIC_BAD = new Set(["overdue", "failed", "overran", "never_finished", "error"]);
async function loadPeriodic() {
  const out = await api("GET", "/api/alertd/v1/periodic");
  const bad = out.entries.filter((e) => PERIODIC_BAD.has(e.state)).length;
  $("#count-periodic").textContent = bad ? String(bad) : "";
  const notes = out.source ? [...out.problems, ...out.warnings] : ["No schedule source: set periodic.app in alertd.yaml (docs/periodic.md)."];
  $("#periodic-warnings").replaceChildren(...notes.map((w) => h("div", { class: "error" }, w)));
  $("#periodic tbody").replaceChildren(...out.entries.map((e) => {
    const last = e.last_run;
    const at = last && (last.sent_at || last.received_at);
    const outcome = last ? last.outcome + (last.exception ? ` (${last.exception})` : "") : "never";
    return h("tr", { class: PERIODIC_BAD.has(e.state) ? "firing" : "", "data-entry": e.name },
      h("td", {}, h("strong", {}, e.name)), h("td", {}, e.task), h("td", {}, e.schedule_text),
      h("td", {}, e.next_expected ? time(e.next_expected) : "-"), h("td", {}, at ? time(at) : "-"),
      h("td", {}, outcome), h("td", {}, h("span", { class: `tag ${PERIODIC_BAD.has(e.state) ? "firing" : e.state}` }, e.state)));
  }));
}

async function loadHistory() {
  const entries = await api("GET", "/api/alertd/v1/history?limit=50");
  $("#history tbody").replaceChildren(...entries.map((e) => h("tr", { class: e.kind },
    h("td", {}, time(e.time)), h("td", {}, h("span", { class: `tag ${e.kind}` }, e.kind)), h("td", {}, e.receiver),
    h("td", {}, (e.alertnames || []).join(", ")), h("td", {}, e.reason), h("td", {}, e.outcome), h("td", {}, e.author))));
}

async function loadHealth() {
  const [hl, ov] = await Promise.all([api("GET", "/api/alertd/v1/health"), api("GET", `${CONSOLE}/overview`)]);
  const s = hl.stream;
  // the daemon samples the event count itself: the rate is there on the first poll
  const rate = ov.tiles.events_per_second.value;
  const online = hl.workers.filter((w) => w.state === "online").length;
  const ind = $("#stream");
  ind.className = `stream ${s.connected ? "up" : "down"}`;
  ind.textContent = s.connected ? `stream up · ${online} workers` : "stream DOWN";
  const facts = { "Broker": s.broker, "Transport": s.transport, "Connected": s.connected ? "yes" : `no (${s.last_error})`,
    "Last event": s.last_event_at ? ago(s.last_event_at * 1000) : "none yet",
    "Ingest rate": rate === null ? `no sample yet (every ${duration(ov.step)})` : `${num(rate)} events/s`,
    "Events": num(s.events), "Malformed skipped": num(s.malformed), "Reconnects": num(s.reconnects), "Workers online": online,
    "Tasks in flight": num(hl.observer.tasks_tracked), "Version": hl.version, "Replica": hl.replica,
    "Up": duration(hl.uptime_seconds) };
  $("#health").replaceChildren(...Object.entries(facts).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
  if (state.tab !== "health") return;
  $("#workers tbody").replaceChildren(...hl.workers.map((w) => h("tr", { class: w.state },
    h("td", {}, w.hostname), h("td", {}, h("span", { class: `tag ${w.state}` }, w.state)),
    h("td", {}, w.last_heartbeat ? timeAt(w.last_heartbeat) : ""), h("td", {}, String(w.active)),
    h("td", {}, String(w.pool_size ?? "")), h("td", {}, num(w.processed)),
    h("td", {}, w.memory_bytes ? fmt(w.memory_bytes, "bytes") : ""),
    h("td", {}, lossText(w.last_loss)), h("td", { class: w.clock_skewed ? "skewed" : "" }, clockText(w)))));
}

// The worker's last loss or shutdown: how, when, and the tasks it took (alertd's orphaned tasks).
function lossText(loss) {
  if (!loss) return "";
  const tasks = loss.orphaned ? ` · ${loss.orphaned} task(s), ${loss.redelivered} redelivered` : "";
  return `${loss.cause} ${ago(loss.at * 1000)}${tasks}`;
}

// Its clock against alertd's: shown when further off than observe.max_clock_skew, never a reason to drop it.
function clockText(w) {
  if (w.clock_offset === null || w.clock_offset === undefined || !w.clock_skewed) return "";
  const s = Math.abs(w.clock_offset);
  return `${s >= 120 ? `${(s / 60).toFixed(0)} min` : `${s.toFixed(1)} s`} ${w.clock_offset > 0 ? "ahead" : "behind"}`;
}

// -- shell ----------------------------------------------------------------------------------
const LOADERS = { overview: loadOverview, tasks: loadTasks, workers: loadWorkers, queues: loadQueues,
  rules: loadRules, history: loadHistory, health: loadHealth };

function switchTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === tab);
  for (const p of document.querySelectorAll(".panel")) p.hidden = p.id !== `tab-${tab}`;
}

async function loadMe() {
  state.me = await api("GET", "/api/alertd/v1/whoami");
  $("#whoami").textContent = state.me.role ? `${state.me.name} (${state.me.role})` : "not signed in";
  for (const el of document.querySelectorAll(".write")) {
    if (el.tagName === "FORM") { if (!canWrite()) el.hidden = true; } else el.hidden = !canWrite();
  }
}

let refreshing = null;
let queued = null;
function refresh() {
  if (refreshing) {
    // not stacked on a slow poll, but one more pass after it: a write must see what follows it
    queued = queued || refreshing.then(() => { queued = null; return refresh(); });
    return queued;
  }
  refreshing = (async () => {
    try {
      await loadMe();
      if (!state.units || !Object.keys(state.units).length) await loadOverview();
      const extra = LOADERS[state.tab];
      await Promise.all([loadAlerts(), loadSilences(), loadMaintenance(), loadRules(), loadHealth(), loadPeriodic(),
        extra && extra !== loadRules && extra !== loadHealth ? extra() : null]);
      showError(null);
    } catch (err) {
      showError(err);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

function openTab(tab) {
  switchTab(tab);
  saveUrl();
  refresh();
}

for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => openTab(b.dataset.tab));
$("#token").value = state.token;
$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.token = $("#token").value.trim();
  localStorage.setItem("alertd-token", state.token);
  refresh();
});
$("#silence-new").addEventListener("click", () => openSilenceForm({}));
$("#maintenance-new").addEventListener("click", () => openSilenceForm({ maintenance: true }));
$("#silence-cancel").addEventListener("click", () => { $("#silence-form").hidden = true; });
$("#mw-new").addEventListener("click", openWindowForm);
$("#mw-cancel").addEventListener("click", () => { $("#mw-form").hidden = true; });
$("#mw-preview").addEventListener("click", () => previewWindow().catch(showError));
$("#mw-form").addEventListener("submit", (ev) => saveWindow(ev).catch(showError));
$("#silence-preview").addEventListener("click", () => preview().catch(showError));
$("#silence-form").addEventListener("submit", (ev) => saveSilence(ev).catch(showError));
$("#show-expired").addEventListener("change", () => Promise.all([loadSilences(), loadMaintenance()]).catch(showError));
const filter = $("#filter");
filter.addEventListener("input", showSuggestions);
filter.addEventListener("focus", showSuggestions);
filter.addEventListener("blur", () => { $("#suggest").hidden = true; });
filter.addEventListener("keydown", (ev) => {
  const first = $("#suggest li");
  if (ev.key === "Tab" && first && !$("#suggest").hidden) { ev.preventDefault(); complete(first.textContent); }
  if (ev.key === "Enter") { ev.preventDefault(); $("#suggest").hidden = true; applyFilter(); }
});
filter.addEventListener("change", applyFilter);
for (const id of ["#group-by", "#show-silenced", "#show-inhibited"]) $(id).addEventListener("change", applyFilter);
bindTasks();

// The URL opens the page where it was shared: #tab=alerts&filter=queue%3Dpayments&group=queue
const params = urlParams();
if (params.get("filter")) { filter.value = params.get("filter"); state.filter = filter.value.trim(); }
if (params.get("group")) $("#group-by").append(h("option", { value: params.get("group") }, params.get("group")));
$("#group-by").value = params.get("group") || "";
$("#show-silenced").checked = params.get("silenced") !== "false";
$("#show-inhibited").checked = params.get("inhibited") !== "false";
openTaskFromUrl(params.get("task"));
switchTab(LOADERS[params.get("tab")] || ["alerts", "silences"].includes(params.get("tab")) ? params.get("tab") : "alerts");
refresh();
setInterval(refresh, POLL_MS);
