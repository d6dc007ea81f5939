// The API seen from the page: the key in sessionStorage, sent as a Bearer header to this
// origin only; problems (RFC 9457) raised as ApiError; SSE read with fetch() because
// EventSource cannot send the Authorization header.

const KEY = "deepzoo.key";

export function getKey() { return sessionStorage.getItem(KEY); }
export function setKey(key) { sessionStorage.setItem(KEY, key); }
export function forgetKey() { sessionStorage.removeItem(KEY); }

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// where the API's "/" is: the page is served there, so behind a proxy that mounts the API
// under a prefix (uvicorn --root-path /deepzoo) the calls carry the same prefix
const BASE = new URL(".", location.href).pathname.replace(/\/$/, "");

/** Only paths of this origin: the key never goes anywhere else. */
function own(path) {
  if (typeof path !== "string" || !path.startsWith("/") || path.startsWith("//")) {
    throw new Error(`not a path of this origin: ${path}`);
  }
  return BASE + path;
}

function headers(extra) {
  const out = { Accept: "application/json", ...extra };
  const key = getKey();
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

async function problemOf(r) {
  const type = r.headers.get("content-type") || "";
  if (type.includes("json")) {
    try { return await r.json(); } catch { /* fall through */ }
  }
  return { status: r.status, title: r.statusText, detail: `HTTP ${r.status} ${r.statusText}` };
}

/** JSON in, JSON out; null for 204; ApiError for any 4xx/5xx. */
export async function api(path, { method = "GET", body, signal, key } = {}) {
  const extra = body === undefined ? {} : { "Content-Type": "application/json" };
  const hs = headers(extra);
  if (key) hs.Authorization = `Bearer ${key}`;
  const r = await fetch(own(path), {
    method, signal, headers: hs, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw new ApiError(r.status, await problemOf(r));
  if (r.status === 204) return null;
  return r.json();
}

/** A picture fetched with the key, as an object URL for <img src> (which cannot send it). */
export async function blobUrl(path, signal) {
  const r = await fetch(own(path), { headers: headers({ Accept: "image/*" }), signal });
  if (!r.ok) throw new ApiError(r.status, await problemOf(r));
  return URL.createObjectURL(await r.blob());
}

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
export const isTerminal = (status) => TERMINAL.has(status);

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
});

/**
 * Follow a job's events (docs/api.md, Events) until its terminal status or `signal` aborts.
 * onEvent({id, event, data}) is called for each one. A dropped stream is reopened with
 * Last-Event-ID, so nothing is missed or repeated; a 429 waits its Retry-After.
 */
export async function follow(jobId, onEvent, { signal, onState } = {}) {
  let lastId = null;
  let delay = 500;
  while (!signal?.aborted) {
    let ended = false;
    try {
      const hs = headers({ Accept: "text/event-stream" });
      if (lastId !== null) hs["Last-Event-ID"] = String(lastId);
      const r = await fetch(own(`/v1/jobs/${encodeURIComponent(jobId)}/events`), {
        headers: hs, signal, cache: "no-store",
      });
      if (r.status === 429) {
        const wait = Number(r.headers.get("retry-after")) || 5;
        onState?.("waiting");
        await sleep(wait * 1000, signal);
        continue;
      }
      if (!r.ok) throw new ApiError(r.status, await problemOf(r));
      onState?.("live");
      delay = 500;
      ended = await readEvents(r.body, (ev) => {
        if (ev.id !== null) lastId = ev.id;
        onEvent(ev);
      });
    } catch (err) {
      if (signal?.aborted) return;
      if (err instanceof ApiError && err.status < 500 && err.status !== 408) throw err;
    }
    if (ended) return;
    onState?.("reconnecting");
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 10000);
  }
}

/** Parse a text/event-stream body; true once the terminal status was seen. */
async function readEvents(body, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let ev = { id: null, event: "message", data: [] };
  let terminal = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (ev.data.length) {
          const raw = ev.data.join("\n");
          let data;
          try { data = JSON.parse(raw); } catch { data = raw; }
          dispatch({ id: ev.id, event: ev.event, data });
          if (ev.event === "status" && data && isTerminal(data.status)) terminal = true;
        }
        ev = { id: ev.id, event: "message", data: [] };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "data") ev.data.push(val);
      else if (field === "event") ev.event = val;
      else if (field === "id" && /^\d+$/.test(val)) ev.id = Number(val);
    }
  }
  return terminal;
}
