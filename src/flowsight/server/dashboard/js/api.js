// Talking to the flowsight API: JSON with the token as a Bearer header, and
// the live stream read with fetch() (so the token stays in a header; an
// EventSource cannot send one), parsed as Server-Sent Events, resumed with
// Last-Event-ID after a drop.

const TOKEN_KEY = 'flowsight.token';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let unauthorized = () => {};
/** Called with the server's message when a request is answered 401. */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token); else localStorage.removeItem(TOKEN_KEY);
  } catch { /* storage off: the token lasts until the page is left */ }
}

function headers(extra = {}) {
  const out = {Accept: 'application/json', ...extra};
  const token = getToken();
  if (token) out.Authorization = `Bearer ${token}`;
  return out;
}

/** A URL of this server with the query params set (arrays repeat; empty values left out). */
export function url(path, params = {}) {
  const u = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v !== null && v !== undefined && v !== '') u.searchParams.append(key, String(v));
    }
  }
  return u;
}

/** GET (or another method with a JSON body); the decoded answer. Throws ApiError. */
export async function api(path, {params = {}, method = 'GET', body, signal} = {}) {
  const init = {method, headers: headers(body !== undefined ? {'Content-Type': 'application/json'} : {}), signal};
  if (body !== undefined) init.body = JSON.stringify(body);
  let res;
  try {
    res = await fetch(url(path, params), init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'the server cannot be reached');
  }
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  const message = (data && data.error) || `${res.status} ${res.statusText}`;
  if (res.status === 401) {
    unauthorized(message);
  }
  if (!res.ok) throw new ApiError(res.status, message);
  return data;
}

/** Parse one SSE block ("id: 3\nevent: started\ndata: {...}"). */
export function parseBlock(block) {
  const out = {event: 'message', data: [], id: null, retry: null};
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') out.event = value;
    else if (field === 'data') out.data.push(value);
    else if (field === 'id') out.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) out.retry = Number(value);
  }
  return out;
}

const statusListeners = new Set();
/** fn(state) with state 'live' | 'connecting' | 'reconnecting' | 'off'. */
export function onStreamStatus(fn) {
  statusListeners.add(fn);
  return () => statusListeners.delete(fn);
}
/** For pages that poll instead of following the stream: 'polling'. */
export function setLiveStatus(state) {
  tell(state);
}
function tell(state) {
  for (const fn of statusListeners) fn(state);
}

/**
 * Follow GET /api/v1/stream (params: workflow, run_id). onEvent gets each
 * event's JSON (seq, id, ts, kind, workflow, run_id, step, attrs), or
 * {kind: 'overflow'} when the server says the page missed some (reload).
 * Returns a function that closes the stream.
 */
export function openStream(params, onEvent) {
  let lastId = null;
  let retry = 2000;
  let closed = false;
  let controller = null;
  let timer = null;

  async function connect() {
    controller = new AbortController();
    const extra = {Accept: 'text/event-stream'};
    if (lastId !== null) extra['Last-Event-ID'] = lastId;
    tell(lastId === null ? 'connecting' : 'reconnecting');
    try {
      const res = await fetch(url('/api/v1/stream', params), {headers: headers(extra), signal: controller.signal,
        cache: 'no-store'});
      if (res.status === 401) {
        unauthorized('the stream needs a token');
        tell('off');
        return;
      }
      if (!res.ok || !res.body) throw new ApiError(res.status, `stream answered ${res.status}`);
      tell('live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = parseBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (block.retry !== null) retry = block.retry;
          if (block.id !== null) lastId = block.id;
          if (block.event === 'overflow') { onEvent({kind: 'overflow'}); continue; }
          if (!block.data.length) continue;
          let event;
          try { event = JSON.parse(block.data.join('\n')); } catch { continue; }
          try { onEvent(event); } catch (err) { console.warn('stream handler failed', err); }
        }
      }
    } catch (err) {
      if (closed) return;
    }
    if (!closed) {
      tell('reconnecting');
      timer = setTimeout(connect, retry);
    }
  }

  connect();
  return () => {
    closed = true;
    clearTimeout(timer);
    if (controller) controller.abort();
  };
}
