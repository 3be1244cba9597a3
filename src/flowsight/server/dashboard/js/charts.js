// Charts drawn as SVG: a sparkline, a line chart over time, a Gantt timeline
// of a run's steps, and a scatter of durations. Each scales to its box
// (viewBox, width 100%) and carries a text alternative.

import {clock, dur, s} from './dom.js';

/** A sparkline of values (oldest first), each point coloured by its state. */
export function sparkline(points, {width = 240, height = 44, label = 'trend'} = {}) {
  const vals = points.map((p) => p.value).filter((v) => v !== null && v !== undefined);
  const svg = s('svg', {class: 'spark', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label});
  if (!vals.length) {
    svg.append(s('text', {x: 4, y: height / 2 + 4, class: 'axis'}, 'no ended runs yet'));
    return svg;
  }
  const max = Math.max(...vals) || 1;
  const pad = 3;
  const step = points.length > 1 ? (width - 2 * pad) / (points.length - 1) : 0;
  const xy = points.map((p, i) => [points.length > 1 ? pad + i * step : width / 2, height - pad - ((p.value || 0) / max) * (height - 2 * pad)]);
  svg.append(s('polyline', {class: 'line', points: xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ')}));
  points.forEach((p, i) => {
    svg.append(s('circle', {cx: xy[i][0].toFixed(1), cy: xy[i][1].toFixed(1), r: 2.6, class: `dot state-${p.state}`},
      s('title', {}, p.title || `${dur(p.value)} (${p.state})`)));
  });
  return svg;
}

function ticks(lo, hi, n) {
  const out = [];
  for (let i = 0; i <= n; i += 1) out.push(lo + ((hi - lo) * i) / n);
  return out;
}

/**
 * The y axis from 0 to vmax: up to n + 1 values whose labels all differ (a
 * chart of tiny values reads 0%, 1%, not 1%, 1%, 0%); 0 alone when even 0 and
 * vmax read alike.
 */
function valueTicks(vmax, n, format) {
  for (let k = n; k >= 1; k -= 1) {
    const values = ticks(0, vmax, k);
    if (new Set(values.map((v) => format(v))).size === values.length) return values;
  }
  return [0];
}

/**
 * A chart of one or more series over time: series = [{name, points: [{ts, value}], cls}].
 * bands = [{from, to, label, cls}] drawn behind (the run's steps); format(value) labels the y axis.
 */
export function lineChart(series, {from, to, format = String, label = 'chart', bands = [], height = 160,
  width = 600} = {}) {
  const left = 64;
  const right = 10;
  const top = 10;
  const bottom = 22;
  const all = series.flatMap((se) => se.points);
  const lo = from ?? Math.min(...all.map((p) => p.ts));
  const hi = Math.max(to ?? Math.max(...all.map((p) => p.ts)), lo + 1);
  const vmax = Math.max(0, ...all.map((p) => p.value)) || 1;
  const x = (ts) => left + ((ts - lo) / (hi - lo)) * (width - left - right - 20);
  const y = (v) => top + (1 - v / vmax) * (height - top - bottom);
  const svg = s('svg', {class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label});
  for (const b of bands) {
    const x0 = x(Math.max(lo, b.from));
    const x1 = x(Math.min(hi, b.to));
    if (x1 <= x0) continue;
    svg.append(s('rect', {class: `band ${b.cls || ''}`, x: x0.toFixed(1), y: top, width: (x1 - x0).toFixed(1),
      height: height - top - bottom}, s('title', {}, b.label)));
  }
  for (const v of valueTicks(vmax, 2, format)) {
    svg.append(s('line', {class: 'grid', x1: left, x2: width - right, y1: y(v), y2: y(v)}));
    svg.append(s('text', {class: 'axis', x: left - 6, y: y(v) + 4, 'text-anchor': 'end'}, format(v)));
  }
  for (const t of ticks(lo, hi, 4)) {
    svg.append(s('text', {class: 'axis', x: x(t), y: height - 6, 'text-anchor': 'middle'}, clock(t)));
  }
  if (!all.length) {
    svg.append(s('text', {class: 'axis', x: width / 2, y: height / 2, 'text-anchor': 'middle'}, 'no samples'));
  }
  for (const se of series) {
    if (!se.points.length) continue;
    const d = se.points.map((p, i) => `${i ? 'L' : 'M'}${x(p.ts).toFixed(1)},${y(p.value).toFixed(1)}`).join(' ');
    svg.append(s('path', {class: `series ${se.cls || ''}`, d}, s('title', {}, se.name)));
  }
  return svg;
}

/**
 * The Gantt timeline of a run's steps: a row per attempt, a bar from its
 * start to its end (a running one to now); failed bars red.
 */
export function gantt(steps, {start, end, now, width = 800}) {
  const rows = steps.filter((st) => st.started_at !== null || st.ended_at !== null);
  const labelW = Math.min(170, width * 0.3);
  const rowH = 26;
  const top = 8;
  const axisH = 22;
  const height = top + Math.max(1, rows.length) * rowH + axisH;
  const t0 = Math.min(start ?? Infinity, ...rows.map((r) => r.started_at ?? r.ended_at));
  const t1 = Math.max(end ?? now, ...rows.map((r) => r.ended_at ?? now), t0 + 1);
  const x = (t) => labelW + ((t - t0) / (t1 - t0)) * (width - labelW - 28);
  const svg = s('svg', {class: 'gantt', viewBox: `0 0 ${width} ${height}`, 'data-testid': 'timeline', role: 'img',
    'aria-label': `timeline of ${rows.length} step attempts over ${dur(t1 - t0)}`});
  for (const [i, t] of ticks(t0, t1, 5).entries()) {
    svg.append(s('line', {class: 'grid', x1: x(t), x2: x(t), y1: top, y2: height - axisH}));
    // the last label ends at its line: centred, it would run past the right edge
    svg.append(s('text', {class: 'axis', x: x(t), y: height - 6, 'text-anchor': i === 5 ? 'end' : 'middle'},
      `+${dur(t - t0)}`));
  }
  if (!rows.length) {
    svg.append(s('text', {class: 'axis', x: labelW, y: top + 17}, 'no steps yet'));
  }
  rows.forEach((st, i) => {
    const y = top + i * rowH;
    const from = st.started_at ?? st.ended_at;
    const to = st.ended_at ?? now;
    const name = st.attempt > 1 ? `${st.step} (#${st.attempt})` : st.step;
    const room = Math.max(6, Math.floor(labelW / 7.5));
    svg.append(s('text', {class: 'label', x: labelW - 8, y: y + 17, 'text-anchor': 'end'},
      name.length > room ? `${name.slice(0, room - 1)}…` : name));
    const w = Math.max(2, x(to) - x(from));
    const what = st.status === 'running' ? `running for ${dur(now - from)}` : `${st.status} in ${dur(to - from)}`;
    svg.append(s('rect', {class: `step-bar state-${st.status}`, 'data-testid': 'step-bar', 'data-state': st.status,
      'data-step': st.step, x: x(from).toFixed(1), y: y + 4, width: w.toFixed(1), height: rowH - 8, rx: 3},
    s('title', {}, `${name}: ${what}${st.error ? ` — ${st.error}` : ''}`)));
  });
  return svg;
}

/** Durations over time: points = [{ts, value, state, title}]. */
export function scatter(points, {from, to, label = 'durations', height = 140, width = 600} = {}) {
  const left = 64;
  const bottom = 22;
  const top = 8;
  const lo = from ?? Math.min(...points.map((p) => p.ts));
  const hi = Math.max(to ?? Math.max(...points.map((p) => p.ts)), lo + 1);
  const vmax = Math.max(0, ...points.map((p) => p.value)) || 1;
  const x = (t) => left + ((t - lo) / (hi - lo)) * (width - left - 10);
  const y = (v) => top + (1 - v / vmax) * (height - top - bottom);
  const svg = s('svg', {class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label});
  for (const v of valueTicks(vmax, 2, dur)) {
    svg.append(s('line', {class: 'grid', x1: left, x2: width - 10, y1: y(v), y2: y(v)}));
    svg.append(s('text', {class: 'axis', x: left - 6, y: y(v) + 4, 'text-anchor': 'end'}, dur(v)));
  }
  for (const p of points) {
    svg.append(s('circle', {class: `dot state-${p.state}`, cx: x(p.ts).toFixed(1), cy: y(p.value).toFixed(1), r: 3},
      s('title', {}, p.title || dur(p.value))));
  }
  return svg;
}

/** The width to draw a chart at: its box's, split into columns (the wider, the more). */
export function fitWidth(el, {min = 280, columns = [[1100, 3], [700, 2]], gap = 13, pad = 2} = {}) {
  const w = el.clientWidth || document.documentElement.clientWidth - 32;
  const n = (columns.find(([at]) => w >= at) || [0, 1])[1];
  return Math.max(min, Math.floor((w - gap * (n - 1)) / n) - pad);
}
