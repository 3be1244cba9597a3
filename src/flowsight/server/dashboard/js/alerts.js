// Alerts (/alerts): firing, pending, quiet (silenced, inhibited, flapping)
// and resolved; a silence in one click, its matchers the alert's labels; the
// silences, each can be expired.

import {api, setLiveStatus} from './api.js';
import {ago, dur, failure, h, now, replace, runHref, safeHref, severityBadge, time} from './dom.js';

const GROUPS = [
  ['Firing', ['firing', 'flapping']],
  ['Pending', ['pending']],
  ['Quiet', ['silenced', 'inhibited']],
  ['Resolved', ['resolved']],
];
const DURATIONS = [['1h', '1 hour'], ['2h', '2 hours'], ['4h', '4 hours'], ['1d', '1 day'], ['1w', '1 week']];

/** Matchers selecting exactly this alert's labels (values quoted). */
export function matchersOf(labels) {
  return Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
}

async function silence(alert, duration, matchers, comment) {
  const made = await api('/api/v1/silences', {method: 'POST', body: {
    matchers, duration, created_by: 'dashboard',
    comment: comment || `silenced from the dashboard: ${alert.labels.alertname || alert.fingerprint}`}});
  window.dispatchEvent(new Event('flowsight:alerts-changed')); // the bar's badges count again
  return made;
}

/** One alert as a row; onChange() after it was silenced. */
export function alertRow(a, onChange) {
  const name = a.labels.alertname || '(no alertname)';
  const labels = Object.entries(a.labels).filter(([k]) => k !== 'alertname');
  const runId = a.labels.run_id;
  const link = a.link && !runId ? safeHref(a.link) : null; // only http(s): the server refuses others at ingest
  const summary = a.annotations.summary || a.annotations.description || '';
  const when = a.status === 'resolved' && a.ends_at ? `resolved ${ago(a.ends_at)}` : `since ${ago(a.starts_at)}`;
  const msg = h('p', {class: 'small', role: 'status'});
  const row = h('li', {class: `alert-row status-${a.status}`, 'data-testid': 'alert-row', 'data-state': a.status,
    'data-fingerprint': a.fingerprint},
  h('div', {class: 'alert-main'},
    severityBadge(a.severity), ' ', h('strong', {}, name), ' ',
    h('span', {class: `badge status-${a.status}`}, a.status),
    summary ? h('p', {class: 'summary'}, summary) : null,
    h('ul', {class: 'labels', 'aria-label': 'labels'}, labels.map(([k, v]) => h('li', {}, h('code', {}, `${k}=${v}`)))),
    h('p', {class: 'small muted'}, h('span', {title: time(a.starts_at)}, when),
      a.muted_by ? ` · quiet: ${a.muted_by}` : '',
      a.receivers_told.length ? ` · told: ${a.receivers_told.join(', ')}` : '',
      runId ? [' · ', h('a', {href: runHref(runId)}, `run ${runId}`)] : '',
      link ? [' · ', h('a', {href: link, 'data-testid': 'alert-link'}, 'link')] : '')),
  a.status === 'resolved' || a.status === 'silenced' ? null : silenceControls(a, msg, onChange), msg);
  return row;
}

function silenceControls(a, msg, onChange) {
  const id = `sil-${a.fingerprint}`;
  const select = h('select', {id: `${id}-for`}, DURATIONS.map(([v, label]) => h('option', {value: v}, label)));
  select.value = '2h';
  const checks = Object.entries(a.labels).map(([k, v]) => {
    const box = h('input', {type: 'checkbox', checked: true, id: `${id}-${k}`, value: `${k}="${v}"`});
    return h('div', {}, box, ' ', h('label', {for: `${id}-${k}`}, h('code', {}, `${k}="${v}"`)));
  });
  const comment = h('input', {type: 'text', id: `${id}-comment`, placeholder: 'why (optional)'});
  const button = h('button', {type: 'button', class: 'primary', 'data-testid': 'silence',
    'aria-label': `Silence ${a.labels.alertname || 'alert'} for the chosen time`}, 'Silence');
  button.addEventListener('click', async () => {
    const matchers = checks.map((c) => c.querySelector('input')).filter((b) => b.checked).map((b) => b.value);
    if (!matchers.length) { replace(msg, 'Choose at least one label to match.'); return; }
    button.disabled = true;
    try {
      const sil = await silence(a, select.value, matchers, comment.value.trim());
      replace(msg, `Silenced until ${time(sil.ends_at)}.`);
      onChange();
    } catch (err) {
      button.disabled = false;
      replace(msg, h('span', {class: 'error-text'}, err.status === 403
        ? `Silencing needs an admin token: ${err.message}` : `Could not silence: ${err.message}`));
    }
  });
  return h('div', {class: 'silence'},
    h('label', {for: `${id}-for`}, 'for'), select, button,
    h('details', {}, h('summary', {}, 'Matchers'), h('fieldset', {}, h('legend', {}, 'Match alerts with'), checks,
      h('label', {for: `${id}-comment`}, 'Comment'), comment)));
}

export function mount(root) {
  let alive = true;
  setLiveStatus('polling');
  let showExpired = false;
  const lists = h('div', {class: 'alert-groups'});
  const silBody = h('tbody');
  const expiredBox = h('input', {type: 'checkbox', id: 'show-expired'});
  expiredBox.addEventListener('change', () => { showExpired = expiredBox.checked; load(); });
  const status = h('div', {role: 'status'});
  root.append(h('h1', {}, 'Alerts'), status, lists,
    h('section', {'aria-labelledby': 'h-silences'},
      h('h2', {id: 'h-silences'}, 'Silences'),
      h('p', {}, expiredBox, ' ', h('label', {for: 'show-expired'}, 'Show expired silences')),
      h('div', {class: 'table-wrap'}, h('table', {'data-testid': 'silences'},
        h('thead', {}, h('tr', {}, ['Matchers', 'State', 'From', 'Until', 'By', 'Comment', ''].map((c) =>
          h('th', {scope: 'col'}, c)))), silBody))));

  async function load() {
    let alerts;
    let silences;
    try {
      [alerts, silences] = await Promise.all([api('/api/v1/alerts'),
        api('/api/v1/silences', {params: {all: showExpired ? 'true' : 'false'}})]);
    } catch (err) {
      if (alive && err.status !== 401) replace(status, failure(err));
      return;
    }
    if (!alive) return;
    replace(status);
    replace(lists, GROUPS.map(([label, statuses]) => {
      const rows = alerts.alerts.filter((a) => statuses.includes(a.status));
      const gid = `h-alerts-${label.toLowerCase()}`;
      return h('section', {'aria-labelledby': gid, 'data-group': label.toLowerCase()},
        h('h2', {id: gid}, `${label} `, h('span', {class: 'muted'}, `(${rows.length})`)),
        rows.length ? h('ul', {class: 'alerts'}, rows.map((a) => alertRow(a, load)))
          : h('p', {class: 'muted'}, `No ${label.toLowerCase()} alerts.`));
    }));
    replace(silBody, silences.silences.length ? silences.silences.map(silenceRow)
      : h('tr', {}, h('td', {colspan: 7, class: 'muted'}, 'No silences.')));
  }

  function silenceRow(sl) {
    const expire = h('button', {type: 'button', 'aria-label': `Expire silence ${sl.id}`}, 'Expire');
    expire.addEventListener('click', async () => {
      expire.disabled = true;
      try {
        await api(`/api/v1/silences/${encodeURIComponent(sl.id)}`, {method: 'DELETE'});
        window.dispatchEvent(new Event('flowsight:alerts-changed'));
      } catch (err) {
        replace(status, h('p', {class: 'error', role: 'alert'}, err.status === 403
          ? `Expiring needs an admin token: ${err.message}` : err.message));
      }
      load();
    });
    const left = sl.state === 'active' ? ` (${dur(sl.ends_at - now())} left)` : '';
    return h('tr', {'data-silence-id': sl.id, 'data-state': sl.state},
      h('td', {'data-label': 'Matchers'}, sl.matchers.map((m) => h('code', {class: 'matcher'}, m))),
      h('td', {'data-label': 'State'}, h('span', {class: `badge silence-${sl.state}`}, sl.state)),
      h('td', {'data-label': 'From'}, time(sl.starts_at)),
      h('td', {'data-label': 'Until'}, time(sl.ends_at), left),
      h('td', {'data-label': 'By'}, sl.created_by),
      h('td', {'data-label': 'Comment'}, sl.comment),
      h('td', {}, sl.state === 'expired' ? '' : expire));
  }

  load();
  const timer = setInterval(() => {
    // don't redraw under someone choosing matchers or typing a comment
    if (!lists.contains(document.activeElement) && !lists.querySelector('details[open]')) load();
  }, 5000);
  return () => { alive = false; clearInterval(timer); };
}
