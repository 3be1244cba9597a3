// Faults (/faults): open faults and those resolved in the chosen range, the
// worst first, each with its evidence; the detectors and how they are doing.

import {api, setLiveStatus} from './api.js';
import {ago, dur, failure, h, now, replace, runHref, severityBadge, time} from './dom.js';

const RANK = {critical: 0, error: 1, warning: 2, info: 3};
const RANGES = [['24h', 'last 24 hours'], ['7d', 'last 7 days'], ['30d', 'last 30 days']];

function evidence(ev) {
  const entries = Object.entries(ev || {});
  if (!entries.length) return h('p', {class: 'muted small'}, 'No evidence recorded.');
  return h('dl', {class: 'evidence'}, entries.map(([k, v]) => h('div', {},
    h('dt', {}, k), h('dd', {}, h('code', {}, typeof v === 'string' ? v : JSON.stringify(v))))));
}

/** One fault as a list item (also used on the run page). */
export function faultRow(f) {
  const open = f.status === 'open';
  const runs = f.runs || [];
  return h('li', {class: `fault-row sev-${f.severity} status-${f.status}`, 'data-testid': 'fault-row',
    'data-fault-id': f.id, 'data-status': f.status, 'data-severity': f.severity},
  h('div', {}, severityBadge(f.severity), ' ', h('strong', {}, f.alertname), ' ', h('code', {}, f.target), ' ',
    h('span', {class: `badge status-${open ? 'firing' : 'resolved'}`}, f.status)),
  h('p', {}, f.message),
  h('p', {class: 'small muted'}, `detector ${f.detector} · opened `, h('span', {title: time(f.opened_at)}, ago(f.opened_at)),
    open ? ` · open for ${dur(f.duration_s ?? now() - f.opened_at)}`
      : ` · resolved ${ago(f.resolved_at)} after ${dur(f.duration_s ?? f.resolved_at - f.opened_at)}`,
    f.workflows && f.workflows.length ? ` · workflows: ${f.workflows.join(', ')}` : ''),
  runs.length ? h('p', {class: 'small'}, `Hurt ${runs.length} run${runs.length > 1 ? 's' : ''}: `,
    runs.slice(0, 10).map((r, i) => [i ? ', ' : '', h('a', {href: runHref(r)}, r)]), runs.length > 10 ? ' …' : '') : null,
  f.evidence !== undefined ? h('details', {open: open}, h('summary', {}, 'Evidence'), evidence(f.evidence)) : null);
}

export function sortFaults(faults) {
  return [...faults].sort((a, b) => (a.status === 'open' ? 0 : 1) - (b.status === 'open' ? 0 : 1)
    || RANK[a.severity] - RANK[b.severity] || b.opened_at - a.opened_at);
}

/** One fault (/faults/<id>, where its alert links): the same row, its evidence open. */
export function mountOne(root, [id]) {
  let alive = true;
  setLiveStatus('polling');
  const body = h('div', {'data-testid': 'fault'}, h('p', {class: 'muted'}, 'Loading…'));
  root.append(h('p', {class: 'crumbs'}, h('a', {href: '/faults'}, 'Faults'), ' › fault ', id), body);

  async function load() {
    let f;
    try { f = await api(`/api/v1/faults/${encodeURIComponent(id)}`); } catch (err) {
      if (!alive || err.status === 401) return;
      replace(body, h('h1', {}, `Fault ${id}`), err.status === 404 ? h('p', {}, 'No such fault.') : failure(err));
      return;
    }
    if (!alive) return;
    replace(body, h('h1', {}, f.alertname, ' ', h('code', {}, f.target)), h('ul', {class: 'faults'}, faultRow(f)));
    const details = body.querySelector('details');
    if (details) details.open = true;
  }

  load();
  const timer = setInterval(load, 10000);
  return () => { alive = false; clearInterval(timer); };
}

export function mount(root) {
  let alive = true;
  setLiveStatus('polling');
  const range = h('select', {id: 'fault-range'}, RANGES.map(([v, l]) => h('option', {value: v}, l)));
  range.addEventListener('change', () => load());
  const list = h('div');
  const detectors = h('div');
  root.append(h('h1', {}, 'Faults'),
    h('p', {class: 'filters'}, h('label', {for: 'fault-range'}, 'Open faults, and resolved ones of the'), range),
    list, h('section', {'aria-labelledby': 'h-detectors'}, h('h2', {id: 'h-detectors'}, 'Detectors'), detectors));

  async function load() {
    let data;
    try { data = await api('/api/v1/faults', {params: {since: range.value, limit: 500}}); } catch (err) {
      if (alive && err.status !== 401) replace(list, failure(err));
      return;
    }
    if (!alive) return;
    const faults = sortFaults(data.faults);
    const open = faults.filter((f) => f.status === 'open');
    const openDetails = new Set([...list.querySelectorAll('details')].map((d) => d.open ? d.closest('li').dataset.faultId : null));
    replace(list,
      h('h2', {}, `Open `, h('span', {class: 'muted'}, `(${open.length})`)),
      open.length ? h('ul', {class: 'faults'}, open.map(faultRow)) : h('p', {class: 'muted'}, 'No open faults.'),
      h('h2', {}, 'Resolved ', h('span', {class: 'muted'}, `(${faults.length - open.length})`)),
      faults.length > open.length ? h('ul', {class: 'faults'}, faults.filter((f) => f.status !== 'open').map(faultRow))
        : h('p', {class: 'muted'}, 'None in this range.'));
    for (const d of list.querySelectorAll('details')) if (openDetails.has(d.closest('li').dataset.faultId)) d.open = true;
    replace(detectors, data.detectors.length ? h('div', {class: 'table-wrap'}, h('table', {},
      h('thead', {}, h('tr', {}, ['Detector', 'Status', 'Checks', 'Last check', 'Took', 'Every', 'Last error']
        .map((c) => h('th', {scope: 'col'}, c)))),
      h('tbody', {}, data.detectors.map((d) => h('tr', {'data-detector': d.name},
        h('td', {'data-label': 'Detector'}, d.name),
        h('td', {'data-label': 'Status'}, h('span', {class: `badge det-${d.status}`}, d.status)),
        h('td', {'data-label': 'Checks', class: 'num'}, String(d.checks)),
        h('td', {'data-label': 'Last check'}, ago(d.last_check)),
        h('td', {'data-label': 'Took', class: 'num'}, d.last_duration_s === null ? '—' : dur(d.last_duration_s)),
        h('td', {'data-label': 'Every', class: 'num'}, dur(d.interval_s)),
        h('td', {'data-label': 'Last error'}, d.last_error || ''))))))
      : h('p', {class: 'muted'}, 'This server runs no detectors ([[detectors]] in flowsight.toml).'));
  }

  load();
  const timer = setInterval(load, 10000);
  return () => { alive = false; clearInterval(timer); };
}
