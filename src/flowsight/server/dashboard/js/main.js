// The dashboard's shell: routes (real paths: /, /runs/<id>, /alerts,
// /faults, /performance), the token login, the theme toggle, the live
// indicator and the nav badges.

import {api, getToken, onStreamStatus, onUnauthorized, setToken} from './api.js';
import {h, replace, time} from './dom.js';
import {toggleTheme, themeLabel} from './theme.js';
import * as overview from './overview.js';
import * as run from './run.js';
import * as alerts from './alerts.js';
import * as faults from './faults.js';
import * as perf from './perf.js';

const ROUTES = [
  [/^\/$/, overview, 'overview'],
  [/^\/runs\/(.+)$/, run, 'overview'],
  [/^\/alerts\/?$/, alerts, 'alerts'],
  [/^\/faults\/?$/, faults, 'faults'],
  [/^\/faults\/([0-9]+)$/, {mount: faults.mountOne}, 'faults'],
  [/^\/performance\/?$/, perf, 'performance'],
];

const view = document.getElementById('view');
let cleanup = null;
let loginShown = false;

function match(path) {
  for (const [re, page, nav] of ROUTES) {
    const m = re.exec(path);
    if (m) return {page, nav, params: m.slice(1).map((p) => decodeURIComponent(p))};
  }
  return null;
}

function render() {
  if (cleanup) { cleanup(); cleanup = null; }
  loginShown = false;
  const found = match(window.location.pathname);
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (found && a.dataset.nav === found.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!found) {
    replace(view, h('h1', {}, 'Not found'), h('p', {}, 'No page here. ', h('a', {href: '/'}, 'Go to the overview')));
    return;
  }
  view.replaceChildren();
  refreshBadges();
  cleanup = found.page.mount(view, found.params, new URLSearchParams(window.location.search)) || null;
}

/** Go to a path of the dashboard without reloading. */
export function navigate(path, {replaceState = false} = {}) {
  if (replaceState) window.history.replaceState(null, '', path);
  else window.history.pushState(null, '', path);
  render();
  view.focus({preventScroll: true});
  window.scrollTo(0, 0);
}

document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const target = new URL(a.href, window.location.href);
  if (target.origin !== window.location.origin || !match(target.pathname)) return;
  e.preventDefault();
  navigate(target.pathname + target.search);
});
window.addEventListener('popstate', render);

// ---- login ------------------------------------------------------------------------
function showLogin(message) {
  if (loginShown) return;
  loginShown = true;
  if (cleanup) { cleanup(); cleanup = null; }
  const had = Boolean(getToken());
  const input = h('input', {id: 'token', name: 'token', type: 'password', autocomplete: 'current-password',
    required: true, spellcheck: 'false'});
  const err = h('p', {class: 'error', role: 'alert', id: 'login-error'}, had ? `That token was refused: ${message}` : '');
  const form = h('form', {class: 'login card', 'data-testid': 'login', 'aria-labelledby': 'login-title'},
    h('h1', {id: 'login-title'}, 'Sign in'),
    h('input', {type: 'text', name: 'username', autocomplete: 'username', value: 'flowsight', hidden: true}),
    h('p', {}, 'This flowsight server needs an API token (scope read; admin to silence alerts). ',
      'Make one with ', h('code', {}, 'flowsight token create --scope read --name dashboard'), '.'),
    h('label', {for: 'token'}, 'API token'), input, err,
    h('button', {type: 'submit', class: 'primary'}, 'Sign in'),
    h('p', {class: 'muted small'}, 'The token is kept in this browser (localStorage) and sent as a Bearer header.'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    replace(err, '');
    try {
      await api('/api/v1/overview', {params: {trend: 0}});
      updateSignOut();
      render();
      refreshBadges();
    } catch (ex) {
      loginShown = true;
      replace(err, ex.status === 401 ? 'Unknown or revoked token.' : ex.message);
      input.focus();
    }
  });
  replace(view, form);
  live.dataset.state = 'off';
  live.textContent = LIVE_TEXT.off;
  input.focus();
}
onUnauthorized(showLogin);

function updateSignOut() {
  document.getElementById('sign-out').hidden = !getToken();
}
document.getElementById('sign-out').addEventListener('click', () => {
  setToken('');
  updateSignOut();
  showLogin('');
});

// ---- theme, live status, badges -----------------------------------------------
const toggle = document.getElementById('theme-toggle');
function showTheme() {
  const {label, pressed} = themeLabel();
  toggle.setAttribute('aria-pressed', String(pressed));
  toggle.title = label;
}
toggle.addEventListener('click', () => { toggleTheme(); showTheme(); });
showTheme();

const live = document.getElementById('live');
const LIVE_TEXT = {live: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…', off: 'Not live',
  polling: 'Auto-refresh'};
onStreamStatus((state) => {
  live.dataset.state = state;
  live.textContent = LIVE_TEXT[state] || state;
});

async function refreshBadges() {
  try {
    const o = await api('/api/v1/overview', {params: {trend: 0}});
    const firing = (o.alerts.firing || 0) + (o.alerts.flapping || 0);
    setBadge('nav-alerts', firing, `${firing} firing`);
    setBadge('nav-faults', o.faults_open, `${o.faults_open} open`);
  } catch { /* the page says what failed */ }
}
function setBadge(id, n, label) {
  const el = document.getElementById(id);
  el.hidden = !n;
  el.textContent = String(n);
  el.setAttribute('aria-label', label);
}
setInterval(refreshBadges, 15000);
window.addEventListener('flowsight:alerts-changed', () => { refreshBadges(); });

// ---- the replicas (the footer) ----------------------------------------------------
const footer = document.getElementById('cluster');

/** Who serves this store and who leads each singleton duty (GET /api/v1/cluster). */
export function clusterLine(c) {
  if (c.lease_seconds === null) return [`${c.store} store · this server does every duty`];
  const alive = c.replicas.filter((r) => r.alive);
  const parts = [`${c.store} store · replica ${c.replica_id} of ${alive.length}: `,
    ...alive.map((r, i) => h('span', {class: r.this ? 'this' : ''}, `${i ? ', ' : ''}${r.replica_id}`))];
  const byLeader = new Map();
  for (const d of c.duties) {
    const key = d.leader === null ? '' : `${d.leader}|${d.epoch}`;  // taken together: one line
    if (!byLeader.has(key)) byLeader.set(key, {duty: d, names: []});
    const group = byLeader.get(key);
    group.names.push(d.duty);
    if (d.since !== null && d.since < group.duty.since) group.duty = d;
  }
  for (const {duty, names} of byLeader.values()) {
    parts.push(' · ', h('span', {'data-duties': names.join(' ')},
      duty.leader === null ? `${names.join(', ')}: no leader (the lease lapsed)`
        : `${names.join(', ')} led by ${duty.leader} since ${time(duty.since)}, epoch ${duty.epoch}`));
  }
  return parts;
}

async function refreshCluster() {
  try {
    replace(footer, ...clusterLine(await api('/api/v1/cluster')));
    footer.hidden = false;
  } catch {
    footer.hidden = true;  // an older server, or no token yet
  }
}
setInterval(refreshCluster, 15000);

updateSignOut();
render();
refreshCluster();
