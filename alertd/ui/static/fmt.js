// Humanised numbers, times and plain-SVG charts for alertd's page (no library: see docs/ui.md).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v);
  }
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return el;
}

const blank = (v) => v === null || v === undefined || Number.isNaN(v);

export function num(v) {
  if (blank(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  if (Number.isInteger(v)) return String(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return String(+v.toFixed(1));
  if (a >= 1) return String(+v.toFixed(2));
  return a === 0 ? "0" : String(+v.toPrecision(2));
}

export function bytes(v) {
  if (blank(v)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let x = Math.abs(v);
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i += 1; }
  return `${v < 0 ? "-" : ""}${x >= 100 || i === 0 ? x.toFixed(0) : x.toFixed(1)} ${units[i]}`;
}

export function duration(v) {
  if (blank(v)) return "–";
  const a = Math.abs(v);
  const sign = v < 0 ? "-" : "";
  if (a === 0) return "0 s";
  if (a < 1e-3) return `${sign}${+(a * 1e6).toPrecision(3)} µs`;
  if (a < 1) return `${sign}${+(a * 1e3).toPrecision(3)} ms`;
  if (a < 60) return `${sign}${+a.toPrecision(3)} s`;
  const parts = a < 3600 ? [[60, "m"], [1, "s"]] : a < 86400 ? [[3600, "h"], [60, "m"]] : [[86400, "d"], [3600, "h"]];
  const big = Math.floor(a / parts[0][0]);
  const small = Math.floor((a - big * parts[0][0]) / parts[1][0]);
  return `${sign}${big}${parts[0][1]}${small ? ` ${small}${parts[1][1]}` : ""}`;
}

export function pct(v) {
  if (blank(v)) return "–";
  const p = v * 100;
  return `${p === 0 ? "0" : Math.abs(p) < 1 ? p.toFixed(2) : Math.abs(p) < 10 ? p.toFixed(1) : p.toFixed(0)}%`;
}

// A value in its catalogue unit: seconds, bytes, ratio, rate (per second) or a plain number.
export function fmt(v, unit) {
  switch (unit) {
    case "bytes": return bytes(v);
    case "seconds": return duration(v);
    case "ratio": return pct(v);
    case "rate": return blank(v) ? "–" : `${num(v)}/s`;
    default: return num(v);
  }
}

export const ZERO = "0001-01-01T00:00:00.000Z";
export function ago(ms) {
  const s = (Date.now() - ms) / 1000;
  const abs = Math.abs(s);
  const text = abs < 60 ? `${Math.round(abs)}s` : abs < 3600 ? `${Math.round(abs / 60)}m`
    : abs < 86400 ? `${Math.round(abs / 3600)}h` : `${Math.round(abs / 86400)}d`;
  return s >= 0 ? `${text} ago` : `in ${text}`;
}

// A time: relative, in the browser's zone on the page, UTC on hover.
export function time(iso) {
  if (!iso || iso === ZERO) return h("span", {}, "");
  const d = new Date(iso);
  const utc = `${d.toISOString().replace("T", " ").slice(0, 19)} UTC`;
  const local = d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
  return h("time", { datetime: d.toISOString(), title: utc }, `${ago(d.getTime())} · ${local}`);
}
export const epoch = (t) => (t ? new Date(t * 1000).toISOString() : "");
export const timeAt = (t) => time(epoch(t));

// -- charts: SVG polylines, gaps where a sample is missing --------------------------------------
const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function bounds(lines, threshold) {
  let lo = 0;
  let hi = 0;
  for (const vs of lines) for (const v of vs) if (!blank(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!blank(threshold)) hi = Math.max(hi, threshold);
  return [lo, hi === lo ? lo + 1 : hi];
}

function path(values, w, hgt, lo, hi, n) {
  let d = "";
  let pen = false;
  values.forEach((v, i) => {
    if (blank(v)) { pen = false; return; }
    const x = n > 1 ? (i / (n - 1)) * w : w;
    const y = hgt - ((v - lo) / (hi - lo)) * hgt;
    d += `${pen ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`;
    // a sample alone between gaps is a dot (a round cap on a zero-length line)
    if (!pen && blank(values[i + 1])) d += "h0.01";
    pen = true;
  });
  return d;
}

// A sparkline of one series (the last hour), its threshold as a dashed line.
export function spark(values, { threshold = null, w = 120, hgt = 26, title = "" } = {}) {
  const vs = values || [];
  const [lo, hi] = bounds([vs], threshold);
  const svg = s("svg", { class: "spark", viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt, role: "img", "aria-label": title || "sparkline" });
  if (title) svg.append(s("title", {}, title));
  if (!blank(threshold)) {
    const y = hgt - ((threshold - lo) / (hi - lo)) * hgt;
    svg.append(s("line", { class: "threshold", x1: 0, x2: w, y1: y, y2: y }));
  }
  const d = path(vs, w, hgt - 2, lo, hi, vs.length);
  if (d) svg.append(s("path", { d, class: "line", transform: "translate(0 1)" }));
  return svg;
}

// A line chart with a value scale and a time axis: lines [{name, values, cls}] over times (epoch s).
export function chart(times, lines, { unit = "", title = "", threshold = null } = {}) {
  const W = 380;
  const H = 110;
  const L = 58;
  const B = 18;
  const [lo, hi] = bounds(lines.map((l) => l.values), threshold);
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H + B + 16}`, role: "img", "aria-label": title });
  svg.append(s("text", { x: 0, y: 11, class: "title" }, title));
  const top = 16;
  for (const frac of [0, 0.5, 1]) {
    const y = top + H - frac * H;
    svg.append(s("line", { class: "grid", x1: L, x2: W, y1: y, y2: y }));
    svg.append(s("text", { x: L - 4, y: y + 4, "text-anchor": "end" }, fmt(lo + frac * (hi - lo), unit)));
  }
  if (!blank(threshold)) {
    const y = top + H - ((threshold - lo) / (hi - lo)) * H;
    svg.append(s("line", { class: "threshold", x1: L, x2: W, y1: y, y2: y }));
  }
  const g = s("g", { transform: `translate(${L} ${top})` });
  lines.forEach((l, i) => {
    const d = path(l.values, W - L, H, lo, hi, l.values.length);
    if (d) g.append(s("path", { d, class: `line c${i}` }));
  });
  svg.append(g);
  if (times.length) {
    const hm = (t) => new Date(t * 1000).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    svg.append(s("text", { x: L, y: top + H + 14 }, hm(times[0])));
    svg.append(s("text", { x: W, y: top + H + 14, "text-anchor": "end" }, hm(times[times.length - 1])));
  }
  const legend = h("div", { class: "legend" }, lines.map((l, i) => h("span", { class: `key c${i}` }, l.name)));
  return h("figure", { class: "chart-box" }, svg, lines.length > 1 ? legend : "");
}
