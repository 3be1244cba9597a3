// A run's logs: level filter, text search, grouping by template; new lines
// followed while the run is live.

import {api} from './api.js';
import {TERMINAL, clock, debounce, failure, h, replace, time} from './dom.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
const LIMIT = 500;

export function mountLogs(root, runId) {
  let run = null;
  let lines = []; // oldest first
  let olderCursor = null;
  let templates = new Map(); // template id -> template text
  let timer = null;
  let stopped = false;
  let loading = null;

  const level = h('select', {id: 'log-level'}, h('option', {value: ''}, 'All levels'),
    LEVELS.map((l) => h('option', {value: l}, `${l} and above`)));
  const search = h('input', {id: 'log-q', type: 'search', placeholder: 'text in the message', autocomplete: 'off'});
  const grouped = h('input', {id: 'log-group', type: 'checkbox'});
  const list = h('ol', {class: 'logs', 'data-testid': 'logs', 'aria-live': 'off'});
  const groups = h('div', {class: 'log-groups', hidden: true});
  const older = h('button', {type: 'button', hidden: true}, 'Load older lines');
  const info = h('p', {class: 'muted small', role: 'status'});
  const form = h('form', {class: 'filters', role: 'search', 'aria-label': 'Filter logs'},
    h('label', {for: 'log-level'}, 'Level'), level, h('label', {for: 'log-q'}, 'Search'), search,
    h('span', {}, grouped, ' ', h('label', {for: 'log-group'}, 'Group by template')));
  form.addEventListener('submit', (e) => e.preventDefault());
  root.append(form, info, older, list, groups);

  const reload = () => { lines = []; olderCursor = null; load(); };
  level.addEventListener('change', reload);
  const typed = debounce(reload, 300);
  search.addEventListener('input', typed);
  grouped.addEventListener('change', draw);
  older.addEventListener('click', loadOlder);

  function filters() {
    return {level: level.value, q: search.value.trim()};
  }

  async function load() {
    const mine = loading = {};
    let page;
    try {
      page = await api(`/api/v1/runs/${encodeURIComponent(runId)}/logs`, {params: {...filters(), order: 'desc', limit: LIMIT}});
    } catch (err) {
      if (!stopped && err.status !== 401) replace(info, failure(err));
      return;
    }
    if (stopped || mine !== loading) return;
    lines = page.logs.reverse();
    olderCursor = page.cursor;
    draw();
  }

  async function loadOlder() {
    if (!olderCursor) return;
    const page = await api(`/api/v1/runs/${encodeURIComponent(runId)}/logs`, {params: {...filters(), cursor: olderCursor,
      limit: LIMIT}}).catch(() => null);
    if (!page || stopped) return;
    lines = [...page.logs.reverse(), ...lines];
    olderCursor = page.cursor;
    draw();
  }

  async function follow() {
    if (stopped || !run) return;
    const after = lines.length ? lines[lines.length - 1].seq : 0;
    const page = await api(`/api/v1/runs/${encodeURIComponent(runId)}/logs`, {params: {...filters(), after,
      order: 'asc', limit: 1000}}).catch(() => null);
    if (!page || stopped || !page.logs.length) return;
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
    lines = [...lines, ...page.logs].slice(-5000);
    draw();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  async function loadTemplates() {
    if (!run) return;
    try {
      const since = Math.max(0, (run.start_time || 0) - 60);
      const t = await api('/api/v1/logs/templates', {params: {workflow: run.workflow, since: since.toFixed(3), limit: 1000}});
      templates = new Map(t.templates.map((x) => [x.template_id, x.template]));
      if (grouped.checked) draw();
    } catch { /* groups are named after their first line */ }
  }

  function lineItem(l) {
    return h('li', {class: `log level-${l.level}`, 'data-level': l.level, 'data-seq': l.seq},
      h('time', {title: time(l.ts)}, clock(l.ts, true)), ' ',
      h('span', {class: `lvl lvl-${l.level}`}, l.level.toUpperCase()), ' ',
      l.step ? h('span', {class: 'step'}, `[${l.step}]`) : '', ' ',
      h('span', {class: 'msg'}, l.message));
  }

  function draw() {
    older.hidden = !olderCursor;
    const f = filters();
    replace(info, lines.length ? `${lines.length} line${lines.length > 1 ? 's' : ''}${olderCursor ? ' (the latest)' : ''}`
      : f.level || f.q ? 'No lines match.' : 'No log lines for this run.');
    if (!lines.length) { // the message says so; no empty box under it
      list.hidden = true;
      groups.hidden = true;
      return;
    }
    if (grouped.checked) {
      list.hidden = true;
      groups.hidden = false;
      const by = new Map();
      for (const l of lines) {
        const key = l.template_id || `msg:${l.message}`;
        if (!by.has(key)) by.set(key, []);
        by.get(key).push(l);
      }
      const sorted = [...by.entries()].sort((a, b) => b[1].length - a[1].length);
      replace(groups, h('ul', {class: 'groups', 'data-testid': 'log-groups'}, sorted.map(([key, ls]) => {
        const worst = ls.reduce((w, l) => (LEVELS.indexOf(l.level) > LEVELS.indexOf(w) ? l.level : w), 'trace');
        return h('li', {'data-template-id': key},
          h('details', {}, h('summary', {}, h('span', {class: 'count-pill'}, String(ls.length)), ' ',
            h('span', {class: `lvl lvl-${worst}`}, worst.toUpperCase()), ' ',
            h('code', {}, templates.get(key) || ls[0].message)),
          h('ol', {class: 'logs'}, ls.slice(-200).map(lineItem))));
      })));
      return;
    }
    list.hidden = false;
    groups.hidden = true;
    replace(list, lines.map(lineItem));
  }

  return {
    start(r) {
      run = r;
      load().then(() => { list.scrollTop = list.scrollHeight; });
      loadTemplates();
      timer = setInterval(() => { if (!TERMINAL.has(run.state)) follow(); }, 3000);
    },
    update(r) {
      const ended = run && !TERMINAL.has(run.state) && TERMINAL.has(r.state);
      run = r;
      if (ended) { follow(); loadTemplates(); }
    },
    stop() {
      stopped = true;
      clearInterval(timer);
      typed.cancel();
    },
  };
}
