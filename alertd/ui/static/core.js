// What every part of the page shares: the API client, the token, the caller's role.
export const $ = (sel) => document.querySelector(sel);
export const state = { token: localStorage.getItem("alertd-token") || "", me: null, tab: "alerts", filter: "", units: {}, ruleUnits: {} };

export async function api(method, path, body) {
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

export function showError(err) {
  const box = $("#error");
  if (!err) { box.hidden = true; return; }
  box.textContent = String(err.message || err);
  box.hidden = false;
}

export const canWrite = () => Boolean(state.me && state.me.can_silence);
export const CONSOLE = "/api/alertd/v1/console";
