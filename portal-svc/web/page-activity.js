// Activity: the audit trail (who did what, with which outcome), newest first, filtered
// by action, outcome and period, exported as CSV. Client admins see their client's;
// the platform admin everyone's.

import { get, query } from './api.js';
import { h, mount, when, table, field, select, pageHeader, badge } from './ui.js';

const OUTCOMES = [['', 'Any'], ['ok', 'ok'], ['refused', 'refused'], ['failed', 'failed']];
const FAMILIES = [
  ['', 'Any'], ['auth.', 'Sign-ins (auth.*)'], ['transaction.', 'Money (transaction.*)'], ['batch.', 'Batches (batch.*)'],
  ['user.', 'Users (user.*)'], ['mfa.', 'Two-factor (mfa.*)'], ['application.', 'API keys (application.*)'],
  ['client.', 'Client settings (client.*)'],
];
const PAGE = 100;

/** Unix seconds of a local date's midnight (the end's next midnight when `end`). */
function dayStart(text, end) {
  if (!text) return undefined;
  const date = new Date(`${text}T00:00:00`);
  if (end) date.setDate(date.getDate() + 1);
  return String(Math.floor(date.getTime() / 1000));
}

export async function renderActivity(view, ctx) {
  const params = {
    action: ctx.query.get('action') || '',
    outcome: ctx.query.get('outcome') || '',
    from: ctx.query.get('from') || '',
    to: ctx.query.get('to') || '',
  };
  const filter = {
    action: params.action || undefined,
    outcome: params.outcome || undefined,
    from: dayStart(params.from, false),
    to: dayStart(params.to, true),
    limit: PAGE,
  };
  const entries = await get(`/v1/audit${query(filter)}`);
  const form = h('form', { class: 'card', 'aria-label': 'Activity filters' },
    h('div', { class: 'row' },
      field('Action', select('action', FAMILIES.some(([v]) => v === params.action) ? FAMILIES : [...FAMILIES, [params.action, params.action]], params.action)),
      field('Outcome', select('outcome', OUTCOMES, params.outcome)),
      field('From', h('input', { name: 'from', type: 'date', value: params.from })),
      field('To (inclusive)', h('input', { name: 'to', type: 'date', value: params.to })),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Show'))));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    ctx.navigate(`#/activity${query(Object.fromEntries(new FormData(form).entries()))}`);
  });
  const csv = `/v1/audit${query({ ...filter, format: 'csv' })}`;
  const detail = (e) => (e.detail ? Object.entries(e.detail).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join(', ') : '');
  mount(view,
    pageHeader('Activity', h('a', { href: csv, download: 'activity.csv', class: 'button', id: 'export-activity-csv' }, 'Export (CSV)')),
    form,
    h('section', { class: 'card', 'aria-label': 'Audit trail' },
      table([
        ['When', (e) => when(e.at)],
        ['Who', (e) => (e.actor_type === 'api_key' ? `API key (${e.actor})` : e.actor)],
        ['Action', (e) => e.action],
        ['On', (e) => (e.resource_type ? `${e.resource_type} ${e.resource_id || ''}`.trim() : '')],
        ['Outcome', (e) => badge(e.outcome)],
        ['Detail', detail],
      ], entries.data, { empty: 'No activity matches.' }),
      entries.has_more ? h('p', { class: 'muted' }, `The newest ${PAGE} shown; narrow the period to see older ones.`) : null));
}
