// The customer's live stream: a short-lived token (asked with the key in the header), then an
// EventSource on /v1/customers/{uuid}/events?token=... A dropped stream is reopened with a new
// token, and everything is re-fetched then, since changes may have been missed meanwhile.
import { api } from "./api.js";

export const EVERYTHING = ["customer", "metrics", "avatar", "contacts", "activities", "tasks", "opportunities", "billing"];

/** Open the stream; call onChange(message) per change and onStatus(state, detail); return a stop function. */
export function connectLive(uuid, { onChange, onStatus }) {
  let source = null;
  let stopped = false;
  let opened = false;
  let delay = 1000;
  let timer = null;

  function retry(detail) {
    onStatus("reconnecting", detail);
    clearTimeout(timer);
    timer = setTimeout(open, delay);
    delay = Math.min(delay * 2, 30000);
  }

  async function open() {
    if (stopped) return;
    let grant;
    try {
      grant = await api("POST", `/customers/${encodeURIComponent(uuid)}/events/token`);
    } catch (failure) {
      if (failure.status === 404) { onStatus("unavailable", failure.message); return; }
      retry(`Live updates: ${failure.message}`);
      return;
    }
    if (stopped) return;
    source = new EventSource(grant.url);
    source.addEventListener("ready", () => {
      onStatus("live", "Live updates: on");
      delay = 1000;
      if (opened) onChange({ refresh: EVERYTHING });
      opened = true;
    });
    source.addEventListener("change", (event) => {
      try { onChange(JSON.parse(event.data)); } catch { /* a frame we do not understand */ }
    });
    source.addEventListener("error", () => {
      if (stopped) return;
      // EventSource retries by itself while CONNECTING; a refused stream (expired token, 503) is CLOSED
      if (source.readyState === EventSource.CLOSED) { source.close(); retry("Live updates: reconnecting"); }
      else onStatus("reconnecting", "Live updates: reconnecting");
    });
  }

  open();
  return () => { stopped = true; clearTimeout(timer); if (source) source.close(); };
}
