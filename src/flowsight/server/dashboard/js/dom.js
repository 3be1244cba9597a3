// Building DOM and SVG nodes, and formatting numbers, times and durations.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'class') {
      el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else if (key === 'text') {
      el.textContent = value;
    } else if (key === 'href') {
      const safe = safeHref(value); // a link from the data (an alert's) may be javascript:
      if (safe !== null) el.setAttribute('href', safe);
    } else if (key === 'value' && 'value' in el) {
      el.value = value;
    } else if (key === 'checked' || key === 'selected' || key === 'disabled' || key === 'hidden' || key === 'open') {
      el[key] = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** url when a link may open it: http(s), or a path of this server; else null
 * (javascript:, data: and the like never become an href). */
export function safeHref(url) {
  try {
    const {protocol} = new URL(String(url), window.location.href);
    return protocol === 'http:' || protocol === 'https:' ? String(url) : null;
  } catch {
    return null;
  }
}

/** Append children: nodes, strings (as text), arrays of them; null and false skipped. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h('a', {href: '/', class: 'x', onClick: fn}, 'text', child). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, as h(). */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replace every child of el. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// ---- the server's clock -------------------------------------------------------
let skew = 0; // server time minus this browser's, seconds
export function setServerNow(serverNow) {
  if (typeof serverNow === 'number') skew = serverNow - Date.now() / 1000;
}
/** Now, in seconds since the epoch, on the server's clock. */
export function now() {
  return Date.now() / 1000 + skew;
}

// ---- formatting -----------------------------------------------------------------
/** 0.4 s, 12 s, 3 m 05 s, 2 h 10 m, 3 d 4 h */
export function dur(seconds) {
  // the command line's form (flowsight.model.durations.format_duration): 850ms, 5.0s, 4m 57s, 1h 02m, 2d 03h
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return '—';
  const sec = Math.max(0, seconds);
  if (sec < 1) return `${Math.round(sec * 1000)}ms`;
  if (sec < 60) return `${sec.toFixed(1)}s`;
  const s = Math.round(sec);
  const pad = (n) => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d ${pad(Math.floor((s % 86400) / 3600))}h`;
}

/** "5 m ago", "in 2 m" */
export function ago(ts) {
  if (!ts) return '—';
  const d = now() - ts;
  return d >= 0 ? `${dur(d)} ago` : `in ${dur(-d)}`;
}

/** 2026-11-28 14:03:07 (local time) */
export function time(ts) {
  if (!ts) return '—';
  const d = new Date(ts * 1000);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** 14:03:07.123 */
export function clock(ts, millis = false) {
  const d = new Date(ts * 1000);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  const base = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  return millis ? `${base}.${p(d.getMilliseconds(), 3)}` : base;
}

export function bytes(n) {
  if (n === null || n === undefined || !isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${n < 0 ? '-' : ''}${v < 10 && i > 0 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function pct(x, digits = 0) {
  return x === null || x === undefined ? '—' : `${(x * 100).toFixed(digits)}%`;
}

export function num(x, digits = 2) {
  if (x === null || x === undefined || !isFinite(x)) return '—';
  return Math.abs(x) >= 100 ? String(Math.round(x)) : String(Number(x.toFixed(digits)));
}

// ---- small shared pieces --------------------------------------------------------
export const STATES = ['pending', 'running', 'completed', 'failed', 'suspended', 'cancelled'];
export const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

export function title(word) {
  return word ? word[0].toUpperCase() + word.slice(1) : '';
}

export function badge(state, extra = {}) {
  return h('span', {class: `badge state-${state}`, ...extra}, title(state));
}

export function stallFlag(run) {
  if (!run.stalled) return null;
  const idle = run.idle_seconds !== null ? ` — quiet for ${dur(run.idle_seconds)}` : '';
  return h('span', {class: 'badge stalled', title: `no activity beyond its bound${idle}`}, 'Stalled');
}

export function severityBadge(sev) {
  return h('span', {class: `badge sev-${sev}`}, sev);
}

/** A progress bar with its text: percent done, steps done/total. */
export function progress(run) {
  const p = run.state === 'completed' ? 100 : run.percent_done;
  const total = run.total_steps ? `/${run.total_steps}` : '';
  const word = (run.total_steps || run.completed_steps) === 1 ? 'step' : 'steps';
  const label = `${run.completed_steps}${total} ${word}${p !== null ? ` · ${Math.round(p)}%` : ''}`;
  const bar = h('div', {class: `bar state-${run.state}`, role: 'progressbar', 'aria-label': `progress of ${run.run_id}`,
    'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': p === null ? null : Math.round(p),
    'aria-valuetext': label});
  const fill = h('div', {class: p === null && !TERMINAL.has(run.state) ? 'fill unknown' : 'fill'});
  fill.style.width = `${p === null ? (TERMINAL.has(run.state) ? 0 : 100) : Math.min(100, p)}%`;
  bar.append(fill);
  return h('div', {class: 'progress'}, bar, h('span', {class: 'muted small'}, label));
}

/** ETA text of a run (on the server's clock). */
export function eta(run) {
  if (TERMINAL.has(run.state)) return '';
  if (run.stalled) return 'stalled';
  if (run.state === 'suspended') return 'suspended'; // its clock stands still until it is resumed
  if (!run.eta) return '—';
  const left = run.eta.finish_at - now();
  const conf = run.eta.confidence !== undefined ? ` (${pct(run.eta.confidence)} sure)` : '';
  return left > 0 ? `${dur(left)}${conf}` : `overdue ${dur(-left)}`;
}

/** The run's duration now: ended ones as stored, running ones from their start. */
export function runDuration(run) {
  if (run.start_time && !TERMINAL.has(run.state) && run.state !== 'pending') return now() - run.start_time;
  return run.duration_seconds;
}

export function runHref(runId) {
  return `/runs/${encodeURIComponent(runId)}`;
}

/** Calls fn at most once every `wait` ms (the last call wins; trailing). */
export function throttle(fn, wait) {
  let timer = null;
  let due = false;
  const fire = () => { timer = null; if (due) { due = false; fn(); timer = setTimeout(fire, wait); } };
  const call = () => { due = true; if (timer === null) fire(); };
  call.cancel = () => { clearTimeout(timer); timer = null; due = false; };
  return call;
}

export function debounce(fn, wait) {
  let timer = null;
  const call = (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), wait); };
  call.cancel = () => clearTimeout(timer);
  return call;
}

/** An error box for a failed load (role=alert: read out). */
export function failure(err) {
  return h('p', {class: 'error', role: 'alert'}, `Could not load: ${err && err.message ? err.message : err}`);
}
