// Acknowledgement on the page: who acked an alert and how long ago, and the Ack buttons (a group's
// firing alerts, or one alert). An ack mutes only the alerts firing now and ends when they resolve.
import { api, canWrite } from "./core.js";
import { h, ago } from "./fmt.js";

export const acks = { byFp: new Map() };

export async function loadAcks() {
  const out = await api("GET", "/api/alertd/v1/acks?expired=false");
  acks.byFp = new Map();
  for (const a of out.acks) if (a.state === "active") for (const fp of a.fingerprints) if (!acks.byFp.has(fp)) acks.byFp.set(fp, a);
}

// "acked by ana 5m ago: on it", for an alert an active ack mutes (or "" when none does)
export function ackTag(fp) {
  const a = acks.byFp.get(fp);
  if (!a) return "";
  return h("span", { class: "tag acked", title: `ack ${a.id}` },
    `acked by ${a.acked_by} ${ago(a.acked_at * 1000)}${a.comment ? `: ${a.comment}` : ""}`);
}

// An Ack button for these alerts' firing, unacked, unsilenced ones; none for the read role or nothing to ack
export function ackButton(alerts, after, label = "Ack") {
  const open = alerts.filter((a) => a.status.state === "active" && !acks.byFp.has(a.fingerprint));
  if (!canWrite() || !open.length) return "";
  return h("button", {
    class: "ack-this",
    onclick: async (ev) => {
      ev.stopPropagation();  // on a group's head: not a fold
      const comment = window.prompt(`Acknowledge ${open.length} alert(s)? Comment (optional):`, "");
      if (comment === null) return;
      await api("POST", "/api/alertd/v1/acks", { fingerprints: open.map((a) => a.fingerprint), comment });
      await after();
    },
  }, label);
}
