// api.js: calls to the market node's JSON API (same origin) and its event streams.
// Errors carry the node's ApiError message, which says what was wrong.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

async function read(resp) {
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  if (!resp.ok) {
    const code = body && body.error;
    const message = body && body.message ? body.message : String(text || resp.statusText);
    throw new ApiError(resp.status, code, message);
  }
  return body;
}

export async function get(path) {
  return read(await fetch(path, { headers: { accept: "application/json" } }));
}

export async function post(path, body) {
  return read(await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify(body),
  }));
}

export async function upload(bytes) {
  return read(await fetch("/v1/dashboard/blobs", {
    method: "POST",
    headers: { "content-type": "application/octet-stream" },
    body: bytes,
  }));
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

/** Live updates: one EventSource shared by every page, with listeners per event name. */
export const live = {
  source: null,
  listeners: { stats: new Set(), order: new Set() },
  last: null,
  start(onState) {
    if (this.source) return;
    const src = new EventSource("/v1/dashboard/events");
    this.source = src;
    // Close the stream when the page goes away: a browser may otherwise keep its socket
    // busy for a while, and HTTP/1.1 allows only six per host.
    window.addEventListener("pagehide", () => src.close());
    src.addEventListener("open", () => onState("live"));
    src.addEventListener("error", () => onState("reconnecting…"));
    for (const name of Object.keys(this.listeners)) {
      src.addEventListener(name, (e) => {
        let data;
        try { data = JSON.parse(e.data); } catch { return; }
        if (name === "stats") this.last = data;
        for (const fn of this.listeners[name]) fn(data);
      });
    }
  },
  on(name, fn) {
    this.listeners[name].add(fn);
    return () => this.listeners[name].delete(fn);
  },
};
