// Performance (/performance): per workflow and step, over a chosen range,
// runs and steps per hour and duration percentiles; a workflow's durations
// as a scatter; its live throughput and latency from the server's monitor.

import {api, setLiveStatus} from './api.js';
import {fitWidth, scatter} from './charts.js';
import {dur, failure, h, num, replace, runHref, setServerNow} from './dom.js';

const RANGES = [['1h', 'Last hour'], ['6h', 'Last 6 hours'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'],
  ['30d', 'Last 30 days']];

function q(d, key) {
  return d.count ? dur(d[key]) : '—';
}

export function mount(root, _params, query) {
  let alive = true;
  setLiveStatus('polling');
  const range = h('select', {id: 'perf-range'}, RANGES.map(([v, l]) => h('option', {value: v}, l)));
  range.value = query.get('since') || '24h';
  const wf = h('select', {id: 'perf-workflow'}, h('option', {value: ''}, 'All workflows'));
  wf.value = query.get('workflow') || '';
  const tbody = h('tbody');
  const charts = h('div', {class: 'cards wide'});
  const note = h('p', {class: 'muted small', role: 'status'});
  const form = h('form', {class: 'filters', 'aria-label': 'Range'},
    h('label', {for: 'perf-range'}, 'Range'), range, h('label', {for: 'perf-workflow'}, 'Workflow'), wf);
  form.addEventListener('submit', (e) => e.preventDefault());
  range.addEventListener('change', load);
  wf.addEventListener('change', load);
  root.append(h('h1', {}, 'Performance'), form, note,
    h('div', {class: 'table-wrap'}, h('table', {class: 'perf', 'data-testid': 'perf'},
      h('caption', {class: 'sr-only'}, 'Throughput and duration percentiles per workflow and step'),
      h('thead', {}, h('tr', {}, ['Workflow / step', 'Runs', 'Per hour', 'Failed', 'p50', 'p90', 'p95', 'p99']
        .map((c, i) => h('th', {scope: 'col', class: i ? 'num' : null}, c)))), tbody)),
    h('h2', {}, 'Durations'), charts);

  async function load() {
    const qs = new URLSearchParams({since: range.value, ...(wf.value ? {workflow: wf.value} : {})});
    window.history.replaceState(null, '', `/performance?${qs}`);
    let data;
    try {
      data = await api('/api/v1/performance', {params: {since: range.value, workflow: wf.value}});
    } catch (err) {
      if (alive && err.status !== 401) replace(note, failure(err));
      return;
    }
    if (!alive) return;
    setServerNow(data.until);
    if (!wf.value) {
      const cur = wf.value;
      replace(wf, h('option', {value: ''}, 'All workflows'), data.workflows.map((w) => h('option', {value: w.workflow}, w.workflow)));
      wf.value = cur;
    }
    const sampled = data.workflows.filter((w) => w.sampled).map((w) => w.workflow);
    replace(note, sampled.length ? `Figures of ${sampled.join(', ')} come from the newest 1,000 runs in the range.` : '');
    replace(tbody, data.workflows.length ? data.workflows.map((w) => [
      h('tr', {class: 'wf-row', 'data-workflow': w.workflow},
        h('th', {scope: 'row', 'data-label': 'Workflow'}, w.workflow),
        h('td', {'data-label': 'Runs', class: 'num'}, String(w.runs)),
        h('td', {'data-label': 'Per hour', class: 'num'}, num(w.per_hour)),
        h('td', {'data-label': 'Failed', class: 'num'}, String(w.by_state.failed || 0)),
        h('td', {'data-label': 'p50', class: 'num'}, q(w.duration, 'p50')),
        h('td', {'data-label': 'p90', class: 'num'}, q(w.duration, 'p90')),
        h('td', {'data-label': 'p95', class: 'num'}, q(w.duration, 'p95')),
        h('td', {'data-label': 'p99', class: 'num'}, q(w.duration, 'p99'))),
      w.steps.map((st) => h('tr', {class: 'step-row', 'data-workflow': w.workflow, 'data-step': st.step},
        h('th', {scope: 'row', 'data-label': 'Step'}, h('span', {class: 'indent'}, st.step)),
        h('td', {'data-label': 'Attempts', class: 'num'}, String(st.attempts)),
        h('td', {'data-label': 'Per hour', class: 'num'}, num(st.per_hour)),
        h('td', {'data-label': 'Failed', class: 'num'}, String(st.failed)),
        h('td', {'data-label': 'p50', class: 'num'}, q(st.duration, 'p50')),
        h('td', {'data-label': 'p90', class: 'num'}, q(st.duration, 'p90')),
        h('td', {'data-label': 'p95', class: 'num'}, q(st.duration, 'p95')),
        h('td', {'data-label': 'p99', class: 'num'}, q(st.duration, 'p99')))),
    ]) : h('tr', {}, h('td', {colspan: 8, class: 'muted'}, 'No runs started in this range.')));
    const width = fitWidth(charts, {columns: [[1000, 2]]}) - 34;
    replace(charts, data.workflows.map((w) => h('article', {class: 'card'},
      h('h3', {}, w.workflow),
      scatter(w.points.map((p) => ({ts: p.start_time, value: p.duration_seconds, state: p.state,
        title: `${p.run_id}: ${dur(p.duration_seconds)} (${p.state})`})),
      {from: data.since, to: data.until, width, label: `durations of ${w.points.length} ended runs of ${w.workflow}`}),
      live(w.workflow))));
  }

  function live(name) {
    const box = h('p', {class: 'small muted'}, 'live: …');
    api('/api/v1/metrics/summary', {params: {scope: `workflow:${name}`}}).then((m) => {
      const t = m.throughput || {};
      const lat = (m.latency || {}).run;
      if (!Object.keys(t).length && !(lat && lat.count)) {
        // the chart above reads the store; these live figures count what ended while this server ran
        replace(box, 'Live: no run or step has ended since this server started (the chart above is from the store).');
        return;
      }
      replace(box, `Now: ${num(t.runs_per_s_5m !== undefined ? t.runs_per_s_5m * 3600 : null)} runs/h (5 m), `,
        `${num(t.steps_per_s_1m !== undefined ? t.steps_per_s_1m * 60 : null)} steps/min (1 m)`,
        lat && lat.count ? ` · since the server started: p50 ${dur(lat.p50)}, p99 ${dur(lat.p99)} over ${lat.count} runs` : '');
    }).catch(() => replace(box, ''));
    return box;
  }

  load();
  const timer = setInterval(load, 30000);
  void runHref;
  return () => { alive = false; clearInterval(timer); };
}
