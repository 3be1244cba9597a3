// A run's CPU, memory and I/O charts (its process tree, as the server
// sampled it), with its steps drawn as bands behind the curves.

import {api} from './api.js';
import {lineChart} from './charts.js';
import {badge, bytes, h, now, num} from './dom.js';

const CHARTS = [
  {title: 'CPU', metrics: [['cpu_percent', 'CPU %', 'cpu']], format: (v) => `${num(v, 0)}%`},
  {title: 'Memory (RSS)', metrics: [['memory_bytes', 'RSS', 'mem']], format: bytes},
  {title: 'Disk I/O', metrics: [['disk_read_bytes_per_s', 'read/s', 'read'], ['disk_write_bytes_per_s', 'write/s', 'write']],
    format: (v) => `${bytes(v)}/s`},
];

/** The charts of run:<runId> from since to until (null: now). */
export async function resourceCharts(runId, since, until, steps, width = 600) {
  const to = until ?? now();
  const bands = steps.filter((st) => st.started_at !== null).map((st, i) => ({
    from: st.started_at, to: st.ended_at ?? to, label: `${st.step} (${st.status})`,
    cls: `${i % 2 ? 'odd' : 'even'} state-${st.status}`}));
  const wanted = CHARTS.flatMap((c) => c.metrics.map(([m]) => m));
  let results;
  try {
    results = await Promise.all(wanted.map((metric) => api('/api/v1/metrics/series', {params: {
      scope: `run:${runId}`, metric, since: since.toFixed(3), ...(until ? {until: until.toFixed(3)} : {})}})));
  } catch (err) {
    if (err.status === 401) return h('div');
    return h('p', {class: 'muted'}, `No resource samples: ${err.message}`);
  }
  const byMetric = Object.fromEntries(wanted.map((m, i) => [m, results[i].points]));
  if (!wanted.some((m) => byMetric[m].length)) {
    return h('p', {class: 'muted'}, 'No resource samples for this run. The server samples the process trees of runs ',
      'on its own machine that reported their pid (the SDK and flowsight run do).');
  }
  return h('div', {}, h('div', {class: 'charts'}, CHARTS.map((c) => h('figure', {class: 'card'},
    h('figcaption', {}, c.title, c.metrics.length > 1 ? c.metrics.map(([, label, cls]) =>
      h('span', {class: `key ${cls}`}, label)) : ''),
    lineChart(c.metrics.map(([m, label, cls]) => ({name: label, cls,
      points: byMetric[m].map((p) => ({ts: p.ts, value: p.avg}))})),
    {from: since, to, format: c.format, bands, width, label: `${c.title} of run ${runId} over time`})))),
  stepTable(steps, byMetric, to));
}

/**
 * Per step: CPU mean and peak, peak RSS, bytes read and written. A sample
 * measures the time since the sample before it, so it counts to a step for
 * the part of that interval inside the step (the server samples a run at each
 * step boundary, so that is usually all or nothing); the mean is weighted by time.
 */
function stepTable(steps, byMetric, to) {
  const overlap = (p, prev, from, end) => Math.max(0, Math.min(p.ts, end) - Math.max(prev.ts, from));
  const rows = steps.filter((st) => st.started_at !== null).map((st) => {
    const end = st.ended_at ?? to;
    // the samples whose interval lies in the step, each with the seconds of it inside
    const within = (m) => byMetric[m].flatMap((p, i, all) => {
      const secs = i ? overlap(p, all[i - 1], st.started_at, end) : 0;
      return secs > 0 ? [{...p, secs}] : [];
    });
    const cpu = within('cpu_percent');
    const mem = within('memory_bytes');
    const moved = (m) => within(m).reduce((sum, p) => sum + p.avg * p.secs, 0);
    return {st, cpu, mem, read: moved('disk_read_bytes_per_s'), write: moved('disk_write_bytes_per_s')};
  });
  if (!rows.some((r) => r.cpu.length || r.mem.length)) return h('p', {class: 'muted small'}, 'No samples fell within a step.');
  const mean = (ps) => ps.reduce((a, p) => a + p.avg * p.secs, 0) / ps.reduce((a, p) => a + p.secs, 0);
  const peak = (ps) => Math.max(...ps.map((p) => p.max ?? p.avg));
  return h('div', {class: 'table-wrap'}, h('table', {class: 'steps-resources', 'data-testid': 'step-resources'},
    h('caption', {}, 'Resources per step (from the samples taken while each step ran)'),
    h('thead', {}, h('tr', {}, ['step', 'samples', 'CPU mean', 'CPU peak', 'RSS peak', 'read', 'written']
      .map((t, i) => h('th', {scope: 'col', class: i > 0 ? 'num' : ''}, t)))),
    h('tbody', {}, rows.map(({st, cpu, mem, read, write}) => h('tr', {'data-step': st.step},
      h('th', {scope: 'row'}, st.step, ' ', badge(st.status)),
      h('td', {class: 'num'}, String(cpu.length)),
      h('td', {class: 'num'}, cpu.length ? `${num(mean(cpu), 0)}%` : '–'),
      h('td', {class: 'num'}, cpu.length ? `${num(peak(cpu), 0)}%` : '–'),
      h('td', {class: 'num'}, mem.length ? bytes(peak(mem)) : '–'),
      h('td', {class: 'num'}, bytes(read)),
      h('td', {class: 'num'}, bytes(write)))))));
}
