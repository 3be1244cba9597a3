// A run's page (/runs/<id>): header (state, progress, ETA, duration against
// the usual), the step timeline (live), state history, faults, alerts,
// resources of its process tree, and logs (run_logs.js).

import {api, openStream} from './api.js';
import {fitWidth, gantt} from './charts.js';
import {TERMINAL, ago, badge, clock, dur, eta, failure, h, now, progress, replace, runDuration,
  stallFlag, throttle, time} from './dom.js';
import {alertRow} from './alerts.js';
import {faultRow} from './faults.js';
import {mountLogs} from './run_logs.js';
import {resourceCharts} from './run_resources.js';

function usualText(run, usual) {
  const d = runDuration(run);
  if (!usual || d === null || d === undefined) return null;
  const diff = (d - usual) / usual;
  const word = Math.abs(diff) < 0.05 ? 'about as usual' : diff > 0 ? `${Math.round(diff * 100)}% longer than usual`
    : `${Math.round(-diff * 100)}% shorter than usual`;
  return h('span', {class: diff > 0.5 ? 'warn-text' : 'muted'}, ` — usual ${dur(usual)} (p50), ${word}`);
}

export function mount(root, [runId]) {
  let alive = true;
  let run = null;
  let usual = null; // p50 of the workflow's completed runs
  const header = h('section', {class: 'card run-header', 'data-testid': 'run-header', 'aria-labelledby': 'run-title'},
    h('h1', {id: 'run-title'}, h('span', {class: 'mono'}, runId)), h('p', {class: 'muted'}, 'Loading…'));
  const timeline = h('div', {class: 'timeline'});
  const stepErrors = h('div');
  const history = h('ol', {class: 'history', 'data-testid': 'state-history'});
  const faults = h('div');
  const alerts = h('div');
  const resources = h('div');
  const logs = h('div');
  root.append(h('p', {class: 'crumbs'}, h('a', {href: '/'}, 'Overview'), ' › run'), header,
    h('section', {'aria-labelledby': 'h-timeline'}, h('h2', {id: 'h-timeline'}, 'Steps'), timeline, stepErrors),
    h('div', {class: 'two'},
      h('section', {'aria-labelledby': 'h-history'}, h('h2', {id: 'h-history'}, 'State history'), history),
      h('section', {'aria-labelledby': 'h-alerts'}, h('h2', {id: 'h-alerts'}, 'Alerts'), alerts,
        h('h2', {id: 'h-faults'}, 'Faults'), faults)),
    h('section', {'aria-labelledby': 'h-resources'}, h('h2', {id: 'h-resources'}, 'Resources of its process tree'),
      resources),
    h('section', {'aria-labelledby': 'h-logs'}, h('h2', {id: 'h-logs'}, 'Logs'), logs));

  async function load() {
    let detail;
    try {
      detail = await api(`/api/v1/runs/${encodeURIComponent(runId)}`);
    } catch (err) {
      if (!alive || err.status === 401) return;
      replace(header, h('h1', {id: 'run-title'}, h('span', {class: 'mono'}, runId)),
        err.status === 404 ? h('p', {}, 'No such run (yet). This page follows it live and shows it once it starts.')
          : failure(err));
      return;
    }
    if (!alive) return;
    const first = run === null;
    const ended = run !== null && !TERMINAL.has(run.state) && TERMINAL.has(detail.state);
    run = detail;
    if (first) {
      loadUsual();
      logsCtl.start(run);
      loadResources();
      loadAlerts();
    }
    // the run just ended: its last samples (the one at its end among them) complete the per-step figures
    if (ended) setTimeout(() => { if (alive) loadResources(); }, 1500);
    logsCtl.update(run);
    draw();
  }

  async function loadUsual() {
    if (run.usual_duration_seconds) { usual = run.usual_duration_seconds; return; }
    try {
      const {workflows} = await api('/api/v1/workflows');
      const w = workflows.find((x) => x.workflow === run.workflow);
      usual = w ? w.duration_p50_seconds : null;
      if (alive) drawHeader();
    } catch { /* the header goes without */ }
  }

  function drawHeader() {
    const r = run;
    const attrs = Object.entries(r.attrs || {}).filter(([, v]) => typeof v !== 'object' || v === null);
    replace(header,
      h('h1', {id: 'run-title'}, h('span', {class: 'mono'}, r.run_id), ' ', badge(r.state, {'data-testid': 'run-state'}),
        ' ', stallFlag(r)),
      h('p', {}, 'Workflow ', h('a', {href: `/?workflow=${encodeURIComponent(r.workflow)}`}, r.workflow),
        r.current_step && !TERMINAL.has(r.state) ? [' · running step ', h('strong', {}, r.current_step)] : '',
        r.retries ? ` · ${r.retries} ${r.retries === 1 ? 'retry' : 'retries'}` : ''),
      progress(r),
      h('dl', {class: 'facts'},
        h('div', {}, h('dt', {}, 'Started'), h('dd', {title: time(r.start_time)}, ago(r.start_time))),
        h('div', {}, h('dt', {}, TERMINAL.has(r.state) ? 'Ended' : 'ETA'),
          h('dd', {'data-testid': 'run-eta'}, TERMINAL.has(r.state) ? ago(r.end_time) : eta(r))),
        h('div', {}, h('dt', {}, 'Duration'), h('dd', {'data-testid': 'run-duration'}, dur(runDuration(r)),
          usualText(r, usual || r.usual_duration_seconds))),
        r.stalled ? h('div', {}, h('dt', {}, 'Quiet for'), h('dd', {}, `${dur(r.idle_seconds)} (bound ${dur(r.stall_bound_seconds)})`)) : null,
        attrs.slice(0, 8).map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {class: 'mono'}, String(v))))),
      r.error ? h('p', {class: 'error', role: 'note'}, h('strong', {}, 'Error: '), r.error) : null,
      datasets(r.attrs || {}));
  }

  // the datasets the run read and wrote (OpenLineage's inputs and outputs)
  function datasets(attrs) {
    const list = (k) => (Array.isArray(attrs[k]) ? attrs[k] : []);
    const ins = list('lineage_inputs'), outs = list('lineage_outputs');
    if (!ins.length && !outs.length) return null;
    const row = (label, names, id) => h('div', {}, h('dt', {}, label),
      h('dd', {'data-testid': id}, names.length ? h('ul', {class: 'plain'}, names.map((n) => h('li', {class: 'mono'}, n))) : '—'));
    return h('section', {'aria-label': 'Datasets'}, h('h2', {}, 'Datasets'),
      h('dl', {class: 'facts'}, row('Read', ins, 'run-inputs'), row('Written', outs, 'run-outputs')));
  }

  function drawTimeline() {
    replace(timeline, gantt(run.steps, {start: run.start_time, end: TERMINAL.has(run.state) ? run.end_time : null,
      now: now(), width: Math.max(320, timeline.clientWidth || 800)}));
  }

  function draw() {
    drawHeader();
    drawTimeline();
    const failed = run.steps.filter((st) => st.status === 'failed');
    replace(stepErrors, failed.map((st) => h('div', {class: 'step-error'},
      h('p', {}, h('strong', {}, st.step), st.attempt > 1 ? ` (attempt ${st.attempt})` : '', ` failed: ${st.error || ''}`),
      st.traceback ? h('details', {}, h('summary', {}, 'Traceback'), h('pre', {}, st.traceback)) : null)));
    replace(history, run.transitions.length ? run.transitions.map((t) => h('li', {class: t.applied ? '' : 'refused',
      'data-state': t.new_state},
    h('time', {datetime: new Date(t.timestamp * 1000).toISOString(), title: time(t.timestamp)}, clock(t.timestamp, true)),
    ' ', badge(t.old_state), ' → ', badge(t.new_state), t.applied ? '' : h('span', {class: 'badge refused'}, 'refused'),
    h('div', {class: 'small'}, t.reason || h('span', {class: 'muted'}, 'no reason given'),
      t.source ? h('span', {class: 'muted'}, ` · from ${t.source}`) : '')))
      : h('li', {class: 'muted'}, 'No transitions yet.'));
    replace(faults, run.faults.length ? h('ul', {class: 'faults'}, run.faults.map(faultRow))
      : h('p', {class: 'muted'}, 'No fault touched this run.'));
  }

  async function loadAlerts() {
    try {
      const {alerts: all} = await api('/api/v1/alerts');
      if (!alive) return;
      const mine = all.filter((a) => a.labels.run_id === runId);
      replace(alerts, mine.length ? h('ul', {class: 'alerts'}, mine.map((a) => alertRow(a, loadAlerts)))
        : h('p', {class: 'muted'}, 'No alerts about this run.'));
    } catch (err) {
      if (alive && err.status !== 401) replace(alerts, failure(err));
    }
  }

  async function loadResources() {
    if (!run) return;
    const until = TERMINAL.has(run.state) && run.end_time ? run.end_time + 10 : null;
    const since = (run.start_time || now() - 3600) - 5;
    replace(resources, await resourceCharts(runId, since, until, run.steps, fitWidth(resources) - 2));
  }

  const logsCtl = mountLogs(logs, runId);
  const refresh = throttle(() => { load(); }, 600);
  const close = openStream({run_id: runId}, () => refresh());
  const ticker = setInterval(() => {
    if (run && !TERMINAL.has(run.state)) { drawHeader(); drawTimeline(); }
  }, 1000);
  const slow = setInterval(() => {
    loadAlerts();
    if (run && !TERMINAL.has(run.state)) { load(); loadResources(); }
  }, 10000);
  load();
  return () => { alive = false; close(); clearInterval(ticker); clearInterval(slow); refresh.cancel(); logsCtl.stop(); };
}
