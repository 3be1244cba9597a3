// The overview's schedules: each workflow with expectations, its last slots as
// a strip (ok, late, missed, overran, too short, deadline missed, unknown),
// the last slot's judgement and streak, and the next expected start in the
// workflow's own time zone.

import {api} from './api.js';
import {ago, failure, h, replace, runHref, title} from './dom.js';

const SLOTS = 20;
const WORDS = {too_short: 'too short', deadline_missed: 'deadline missed', none: 'not yet judged'};

export function scheduleSection() {
  const body = h('tbody');
  const note = h('p', {class: 'muted small', 'aria-live': 'polite'});
  const table = h('table', {class: 'schedules', 'data-testid': 'schedules'},
    h('caption', {class: 'sr-only'}, 'Scheduled workflows: their last slots, oldest first, and the next expected start'),
    h('thead', {}, h('tr', {}, ['Workflow', 'Schedule', 'Last slot', `Last ${SLOTS} slots`, 'Next expected']
      .map((c) => h('th', {scope: 'col'}, c)))), body);
  const section = h('section', {'aria-labelledby': 'h-schedules', id: 'schedules', hidden: true},
    h('h2', {id: 'h-schedules'}, 'Schedules'), h('div', {class: 'table-wrap'}, table), note);

  async function load() {
    let got;
    try { got = await api('/api/v1/schedules', {params: {slots: SLOTS}}); } catch (err) {
      if (err.status !== 401) replace(note, failure(err));
      return;
    }
    section.hidden = got.schedules.length === 0;
    replace(body, got.schedules.map(row));
    replace(note);
  }

  function row(s) {
    const word = WORDS[s.status] || s.status;
    const strip = h('span', {class: 'strip', role: 'list', 'aria-label': `last ${s.slots.length} slots of ${s.workflow}`},
      s.slots.map(slot));
    return h('tr', {'data-testid': 'schedule', 'data-workflow': s.workflow, 'data-status': s.status},
      h('td', {'data-label': 'Workflow'}, h('a', {href: `/?workflow=${encodeURIComponent(s.workflow)}`}, s.workflow)),
      h('td', {'data-label': 'Schedule', class: 'mono small'}, s.schedule),
      h('td', {'data-label': 'Last slot'}, h('span', {class: `badge slot-${s.status}`, 'data-testid': 'schedule-status'},
        title(word)), s.streak > 1 ? h('span', {class: 'muted small'}, ` ×${s.streak}`) : null,
        s.firing.length ? h('div', {class: 'small error-text'}, s.firing.join(', ')) : null),
      h('td', {'data-label': `Last ${SLOTS} slots`}, strip),
      h('td', {'data-label': 'Next expected', 'data-testid': 'schedule-next', title: s.next_at ? ago(s.next_at) : ''},
        s.next_local || '—'));
  }

  function slot(j) {
    const word = WORDS[j.status] || j.status;
    const text = `${j.at_local}: ${word}${j.run_id ? ` (run ${j.run_id})` : ''}`;
    const attrs = {class: `slot slot-${j.status}`, role: 'listitem', title: text, 'aria-label': text,
      'data-testid': 'slot', 'data-status': j.status};
    return j.run_id ? h('a', {...attrs, href: runHref(j.run_id)}) : h('span', attrs);
  }

  return {section, load};
}
