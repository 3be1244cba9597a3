// The overview (/): counts per state, the workflows (success rate, runs per
// state, duration trend), and the runs list with filters and search — kept
// current from the live stream without a reload.

import {api, openStream} from './api.js';
import {sparkline} from './charts.js';
import {scheduleSection} from './schedules.js';
import {STATES, TERMINAL, ago, badge, debounce, dur, eta, failure, h, pct, progress, replace, runDuration,
  runHref, setServerNow, stallFlag, throttle, time, title} from './dom.js';

const PAGE = 50;
// what an event says about its run's state before the server's view arrives
const KIND_STATE = {started: 'running', resumed: 'running', completed: 'completed', failed: 'failed',
  cancelled: 'cancelled', suspended: 'suspended'};

export function mount(root, _params, query) {
  const filters = {workflow: query.get('workflow') || '', state: query.get('state') || '', q: query.get('q') || ''};
  let shown = PAGE;
  let cursor = null;
  let alive = true;
  const rows = new Map(); // run id -> <tr>
  let lastRuns = [];

  const counts = h('ul', {class: 'counts', 'aria-label': 'Runs per state'});
  const extra = h('p', {class: 'muted small', 'aria-live': 'polite'});
  const cards = h('div', {class: 'cards', 'aria-label': 'Workflows'});
  const schedules = scheduleSection();

  const wfSelect = h('select', {id: 'f-workflow', name: 'workflow'}, h('option', {value: ''}, 'All workflows'));
  const stateSelect = h('select', {id: 'f-state', name: 'state'}, h('option', {value: ''}, 'Any state'),
    STATES.map((st) => h('option', {value: st}, title(st))));
  const search = h('input', {id: 'f-q', name: 'q', type: 'search', placeholder: 'run id, workflow, step, error',
    autocomplete: 'off'});
  // the workflow from the address bar is an option before the list of workflows comes
  if (filters.workflow) wfSelect.append(h('option', {value: filters.workflow}, filters.workflow));
  wfSelect.value = filters.workflow;
  stateSelect.value = filters.state;
  search.value = filters.q;
  const form = h('form', {class: 'filters', role: 'search', 'aria-label': 'Filter runs'},
    h('label', {for: 'f-workflow'}, 'Workflow'), wfSelect,
    h('label', {for: 'f-state'}, 'State'), stateSelect,
    h('label', {for: 'f-q'}, 'Search'), search,
    h('button', {type: 'button', class: 'link', onClick: () => { wfSelect.value = ''; stateSelect.value = '';
      search.value = ''; applyFilters(); }}, 'Clear'));
  form.addEventListener('submit', (e) => { e.preventDefault(); applyFilters(); });
  wfSelect.addEventListener('change', () => applyFilters());
  stateSelect.addEventListener('change', () => applyFilters());
  const typed = debounce(() => applyFilters(), 300);
  search.addEventListener('input', typed);

  const tbody = h('tbody');
  const empty = h('p', {class: 'muted', hidden: true}, 'No runs match.');
  const more = h('button', {type: 'button', hidden: true, onClick: () => { shown += PAGE; loadRuns(); }}, 'Show more');
  const table = h('table', {class: 'runs', 'data-testid': 'runs'},
    h('caption', {class: 'sr-only'}, 'Runs, newest first'),
    h('thead', {}, h('tr', {}, ['Run', 'Workflow', 'State', 'Progress', 'Duration', 'ETA', 'Started']
      .map((c) => h('th', {scope: 'col', class: c === 'Duration' || c === 'ETA' ? 'num' : null}, c)))), tbody);
  const status = h('div', {role: 'status', class: 'sr-only'});

  root.append(
    h('h1', {class: 'sr-only'}, 'Overview'),
    h('section', {'aria-labelledby': 'h-states'}, h('h2', {id: 'h-states', class: 'sr-only'}, 'Runs per state'),
      counts, extra),
    schedules.section,
    h('section', {'aria-labelledby': 'h-workflows'}, h('h2', {id: 'h-workflows'}, 'Workflows'), cards),
    h('section', {'aria-labelledby': 'h-runs'}, h('h2', {id: 'h-runs'}, 'Runs'), form,
      h('div', {class: 'table-wrap'}, table), empty, more, status));

  function applyFilters() {
    filters.workflow = wfSelect.value;
    filters.state = stateSelect.value;
    filters.q = search.value.trim();
    const qs = new URLSearchParams(Object.entries(filters).filter(([, v]) => v)).toString();
    window.history.replaceState(null, '', qs ? `/?${qs}` : '/');
    shown = PAGE;
    loadRuns();
  }

  // ---- aggregates ---------------------------------------------------------------
  async function loadOverview() {
    let o;
    try { o = await api('/api/v1/overview'); } catch (err) {
      if (alive && err.status !== 401) replace(extra, failure(err));
      return;
    }
    if (!alive) return;
    setServerNow(o.now);
    replace(counts, STATES.map((st) => h('li', {},
      h('button', {type: 'button', class: `count state-${st}`, 'data-testid': `count-${st}`, 'data-count': o.by_state[st] || 0,
        'aria-pressed': String(filters.state === st), title: `show ${st} runs`,
        onClick: () => { stateSelect.value = filters.state === st ? '' : st; applyFilters(); loadOverview(); }},
      h('span', {class: 'n'}, String(o.by_state[st] || 0)), h('span', {class: 'what'}, title(st))))));
    const firing = (o.alerts.firing || 0) + (o.alerts.flapping || 0);
    replace(extra, `${o.runs} runs · `,
      h('span', {class: o.stalled ? 'warn-text' : '', 'data-testid': 'count-stalled'}, `${o.stalled} stalled`), ' · ',
      h('a', {href: '/alerts'}, `${firing} ${firing === 1 ? 'alert' : 'alerts'} firing`), ' · ',
      h('a', {href: '/faults'}, `${o.faults_open} open ${o.faults_open === 1 ? 'fault' : 'faults'}`),
      ...scheduleCounts(o.schedules || {}));
    const current = wfSelect.value || filters.workflow;
    replace(wfSelect, h('option', {value: ''}, 'All workflows'),
      o.workflows.map((w) => h('option', {value: w.workflow}, w.workflow)));
    if (current && !o.workflows.some((w) => w.workflow === current)) wfSelect.append(h('option', {value: current}, current));
    wfSelect.value = current;
    replace(cards, o.workflows.length ? o.workflows.map(card) : h('p', {class: 'muted'},
      'No runs yet. Send events (see the README) or run ', h('code', {}, 'flowsight demo'), '.'));
  }

  // late and missed workflows, when there are scheduled ones
  function scheduleCounts(by) {
    if (!Object.keys(by).length) return [];
    const late = (by.late || 0) + (by.deadline_missed || 0);
    const missed = by.missed || 0;
    return [' · ', h('a', {href: '#schedules', class: late ? 'warn-text' : '', 'data-testid': 'count-late'},
      `${late} late`), ' · ', h('a', {href: '#schedules', class: missed ? 'error-text' : '', 'data-testid': 'count-missed'},
      `${missed} missed`)];
  }

  function card(w) {
    const total = w.runs || 1;
    const bar = h('div', {class: 'stack', role: 'img', 'aria-label': STATES.filter((st) => w.by_state[st])
      .map((st) => `${w.by_state[st]} ${st}`).join(', ')});
    for (const st of STATES) {
      if (!w.by_state[st]) continue;
      const seg = h('span', {class: `seg state-${st}`, title: `${w.by_state[st]} ${st}`});
      seg.style.width = `${(100 * w.by_state[st]) / total}%`;
      bar.append(seg);
    }
    const trend = w.trend.map((p) => ({value: p.duration_seconds, state: p.state,
      title: `${p.run_id}: ${dur(p.duration_seconds)} (${p.state})`}));
    return h('article', {class: 'card workflow', 'data-testid': 'workflow', 'data-workflow': w.workflow},
      h('h3', {}, h('a', {href: `/?workflow=${encodeURIComponent(w.workflow)}`, onClick: (e) => {
        e.preventDefault(); wfSelect.value = w.workflow; applyFilters(); }}, w.workflow)),
      h('dl', {class: 'facts'},
        h('div', {}, h('dt', {}, 'Success'), h('dd', {'data-testid': 'success-rate'}, pct(w.success_rate))),
        h('div', {}, h('dt', {}, 'Runs'), h('dd', {}, String(w.runs))),
        h('div', {}, h('dt', {}, 'p50 / p95'), h('dd', {}, `${dur(w.duration_p50_seconds)} / ${dur(w.duration_p95_seconds)}`)),
        h('div', {}, h('dt', {}, 'Last run'), h('dd', {}, ago(w.last_run_at)))),
      bar, sparkline(trend, {label: `durations of the last ${trend.length} ended runs of ${w.workflow}`}));
  }

  // ---- runs ------------------------------------------------------------------------
  async function loadRuns() {
    const params = {workflow: filters.workflow, state: filters.state, q: filters.q, limit: Math.min(shown, 1000)};
    let page;
    try { page = await api('/api/v1/runs', {params}); } catch (err) {
      if (alive && err.status !== 401) replace(status, failure(err));
      return;
    }
    if (!alive) return;
    cursor = page.cursor;
    lastRuns = page.runs;
    drawRuns(page.runs);
  }

  function drawRuns(runs) {
    const keep = new Set(runs.map((r) => r.run_id));
    for (const [id, tr] of rows) if (!keep.has(id)) { tr.remove(); rows.delete(id); }
    let prev = null;
    for (const r of runs) {
      let tr = rows.get(r.run_id);
      if (!tr) { tr = makeRow(r); rows.set(r.run_id, tr); }
      updateRow(tr, r);
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== tr) tbody.insertBefore(tr, want);
      prev = tr;
    }
    empty.hidden = runs.length > 0;
    more.hidden = !cursor || shown >= 1000;
  }

  function makeRow(r) {
    const tr = h('tr', {'data-testid': 'run-row', 'data-run-id': r.run_id});
    tr.parts = {};
    tr.append(
      h('td', {'data-label': 'Run'}, h('a', {href: runHref(r.run_id), class: 'mono'}, r.run_id)),
      tr.parts.workflow = h('td', {'data-label': 'Workflow'}, r.workflow),
      tr.parts.state = h('td', {'data-label': 'State'}),
      tr.parts.progress = h('td', {'data-label': 'Progress'}),
      tr.parts.duration = h('td', {'data-label': 'Duration', class: 'num'}),
      tr.parts.eta = h('td', {'data-label': 'ETA', class: 'num'}),
      tr.parts.started = h('td', {'data-label': 'Started'}));
    return tr;
  }

  function updateRow(tr, r) {
    tr.run = r;
    tr.dataset.state = r.state;
    tr.dataset.stalled = String(Boolean(r.stalled));
    replace(tr.parts.state, badge(r.state), ' ', stallFlag(r));
    const step = r.state === 'failed' && r.error ? h('div', {class: 'small error-text', title: r.error}, r.error)
      : r.current_step ? h('div', {class: 'small muted'}, `▸ ${r.current_step}`) : null;
    replace(tr.parts.progress, progress(r), step);
    tick(tr);
    const started = r.start_time;
    tr.parts.started.title = time(started);
    tr.parts.started.textContent = ago(started);
  }

  function tick(tr) {
    const r = tr.run;
    tr.parts.duration.textContent = dur(runDuration(r));
    const usual = r.usual_duration_seconds;
    tr.parts.duration.title = usual ? `usually ${dur(usual)}` : '';
    tr.parts.eta.textContent = eta(r);
  }

  // ---- live ----------------------------------------------------------------------------
  const refresh = throttle(() => { loadRuns(); loadOverview(); schedules.load(); }, 800);
  const close = openStream({}, (ev) => {
    if (ev.kind === 'overflow') { refresh(); return; }
    const tr = rows.get(ev.run_id);
    if (tr) { // what the event says at once; the server's view follows
      const r = {...tr.run};
      if (KIND_STATE[ev.kind]) r.state = KIND_STATE[ev.kind];
      if (ev.kind === 'step_started') r.current_step = ev.step;
      if (ev.kind === 'step_completed') r.completed_steps += 1;
      if (TERMINAL.has(r.state)) r.stalled = false;
      if (r.state !== tr.run.state || ev.kind.startsWith('step_')) updateRow(tr, r);
    }
    refresh();
  });
  const ticker = setInterval(() => { for (const tr of rows.values()) if (!TERMINAL.has(tr.run.state)) tick(tr); }, 1000);
  // ETAs, stall flags and slots age without events
  const slow = setInterval(() => { loadOverview(); loadRuns(); schedules.load(); }, 30000);

  loadOverview();
  loadRuns();
  schedules.load();
  void lastRuns;
  return () => { alive = false; close(); clearInterval(ticker); clearInterval(slow); refresh.cancel(); typed.cancel(); };
}
