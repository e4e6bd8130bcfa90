// Webhooks (client admins): the client's endpoints, creating one (its signing secret
// is shown once, here), an endpoint's page with its delivery log (every attempt: time,
// status code or error, latency), redelivery, secret rotation and disabling.

import { get, post, del, query } from './api.js';
import { h, mount, when, badge, table, field, onSubmit, confirmDialog, flash, pageHeader, shortId } from './ui.js';

/** The event types, as the API names them. */
const TYPES = [
  ['payment.created', 'A payment (sale or authorization) was made'],
  ['payment.captured', 'An authorization was captured'],
  ['payment.voided', 'An authorization was voided'],
  ['refund.created', 'A payment was refunded'],
  ['adjustment.created', 'An adjustment was made'],
  ['batch.closed', 'A settlement batch was closed'],
  ['device.offline', 'A device stopped sending heartbeats'],
  ['rollout.completed', 'A firmware rollout completed'],
  ['ticket.updated', 'A support ticket changed'],
];

/** The secret, shown once, with what to do with it. */
function secretCard(title, secret) {
  const value = h('input', { readonly: true, value: secret, class: 'mono secret', 'aria-label': 'Signing secret' });
  value.addEventListener('focus', () => value.select());
  return h('section', { class: 'card', role: 'status', 'aria-labelledby': 'secret-title' },
    h('h2', { id: 'secret-title' }, title),
    h('p', {}, 'Copy the signing secret now: it is shown only this once. Your receiver checks the ',
      h('code', {}, 'Portal-Signature'), ' header of each delivery with it.'),
    value);
}

export async function renderWebhooks(view, ctx) {
  const before = ctx.query.get('before') || '';
  const here = (extra) => `#/webhooks${query(extra)}`;
  const list = h('section', { class: 'card', 'aria-label': 'Endpoints' });
  const load = async () => {
    const page = await get(`/v1/webhook-endpoints${query({ limit: 50, starting_after: before })}`);
    mount(list,
      table([
        ['Endpoint', (e) => h('a', { href: `#/webhooks/${e.id}`, class: 'mono' }, e.url)],
        ['Events', (e) => e.events.join(', ')],
        ['Status', (e) => badge(e.active ? 'active' : 'disabled')],
        ['Added', (e) => when(e.created_at)],
      ], page.data, { empty: 'No endpoint yet.' }),
      h('div', { class: 'pager' },
        before ? h('a', { href: here({}) }, '« Newest') : null,
        page.has_more && page.data.length ? h('a', { href: here({ before: page.data[page.data.length - 1].id }) }, 'Older »') : null));
  };
  await load();
  const created = h('div', {});
  const create = h('form', { class: 'stack card', 'aria-labelledby': 'new-endpoint-title' },
    h('h2', { id: 'new-endpoint-title' }, 'Add an endpoint'),
    field('URL', h('input', { name: 'url', type: 'url', required: true, maxlength: 2048, placeholder: 'https://example.com/webhooks' }),
      'Events are POSTed here as JSON. Only http and https; private and loopback addresses are refused.'),
    h('fieldset', {},
      h('legend', {}, 'Events to send'),
      TYPES.map(([type, help]) => h('label', { class: 'check' },
        h('input', { type: 'checkbox', name: 'events', value: type, checked: type.startsWith('payment.') || type === 'refund.created' }),
        ' ', h('code', {}, type), ' ', h('span', { class: 'muted' }, help)))),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add endpoint')));
  onSubmit(create, (v) => {
    const events = [...create.querySelectorAll('input[name="events"]:checked')].map((c) => c.value);
    return post('/v1/webhook-endpoints', { url: v.url.trim(), events });
  }, async (endpoint) => {
    flash('Endpoint added.');
    create.querySelector('input[name="url"]').value = '';
    // The secret stays on screen (this is the only time it is shown); the list below
    // is read again around it.
    mount(created, secretCard(`Endpoint #${endpoint.id} added`, endpoint.secret));
    await load();
    created.scrollIntoView();
  });
  mount(view, pageHeader('Webhooks'), created, list, create);
}

function lastAttempt(d) {
  const a = d.attempts[d.attempts.length - 1];
  if (!a) return '—';
  return a.status_code ? `HTTP ${a.status_code}, ${a.latency_ms} ms` : `${a.error || 'no answer'}, ${a.latency_ms} ms`;
}

function attemptsList(d) {
  if (!d.attempts.length) return h('span', { class: 'muted' }, 'none yet');
  return h('details', {},
    h('summary', {}, `${d.attempt_count} attempt${d.attempt_count === 1 ? '' : 's'}`),
    h('ol', {}, d.attempts.map((a) => h('li', {},
      `${when(Math.floor(a.at_ms / 1000))}: `,
      a.status_code ? `HTTP ${a.status_code}` : (a.error || 'no answer'),
      ` (${a.latency_ms} ms)`))));
}

export async function renderWebhook(view, ctx) {
  const [id] = ctx.params;
  const status = ctx.query.get('status') || '';
  const before = ctx.query.get('before') || '';
  const [endpoint, log] = await Promise.all([
    get(`/v1/webhook-endpoints/${id}`),
    get(`/v1/webhook-endpoints/${id}/deliveries${query({ status, limit: 50, starting_after: before })}`),
  ]);
  const secret = h('div', {});
  const rotate = h('button', { type: 'button' }, 'Rotate secret');
  rotate.addEventListener('click', async () => {
    const yes = await confirmDialog({
      title: 'Rotate the signing secret?',
      body: 'Deliveries from now on are signed with a new secret; the old one stops working at once. Update your receiver right away.',
      confirm: 'Rotate',
    });
    if (!yes) return;
    try {
      const rotated = await post(`/v1/webhook-endpoints/${id}/rotate-secret`);
      mount(secret, secretCard('New signing secret', rotated.secret));
    } catch (error) {
      flash(error.message, 'error');
    }
  });
  const disable = h('button', { type: 'button', class: 'danger' }, 'Disable');
  disable.addEventListener('click', async () => {
    const yes = await confirmDialog({
      title: 'Disable this endpoint?',
      body: 'Nothing more is delivered to it, pending deliveries included. Its delivery log stays.',
      confirm: 'Disable',
      danger: true,
    });
    if (!yes) return;
    try {
      await del(`/v1/webhook-endpoints/${id}`);
      flash('Endpoint disabled.');
      ctx.refresh();
    } catch (error) {
      flash(error.message, 'error');
    }
  });
  const redeliver = (d) => {
    if (!endpoint.active) return null;
    const button = h('button', { type: 'button' }, 'Redeliver');
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await post(`/v1/webhook-endpoints/${id}/deliveries/${d.id}/redeliver`);
        flash(`Event ${d.event_id} queued for redelivery.`);
        ctx.refresh();
      } catch (error) {
        flash(error.message, 'error');
        button.disabled = false;
      }
    });
    return button;
  };
  const filter = h('form', { class: 'row', 'aria-label': 'Filter deliveries' },
    field('Status', h('select', { name: 'status' },
      [['', 'Any'], ['pending', 'Pending'], ['succeeded', 'Succeeded'], ['failed', 'Failed']].map(([value, text]) =>
        h('option', { value, selected: value === status }, text)))),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Filter')));
  filter.addEventListener('submit', (event) => {
    event.preventDefault();
    ctx.navigate(`#/webhooks/${id}${query(Object.fromEntries(new FormData(filter).entries()))}`);
  });
  const here = (extra) => `#/webhooks/${id}${query({ status, ...extra })}`;
  mount(view,
    pageHeader(`Endpoint #${endpoint.id}`, endpoint.active ? rotate : null, endpoint.active ? disable : null),
    h('p', {}, h('a', { href: '#/webhooks' }, '« All endpoints')),
    secret,
    h('section', { class: 'card', 'aria-label': 'Endpoint' },
      h('dl', { class: 'facts' },
        h('dt', {}, 'URL'), h('dd', { class: 'mono' }, endpoint.url),
        h('dt', {}, 'Events'), h('dd', {}, endpoint.events.join(', ')),
        h('dt', {}, 'Status'), h('dd', {}, badge(endpoint.active ? 'active' : 'disabled')),
        h('dt', {}, 'Added'), h('dd', {}, when(endpoint.created_at)))),
    h('section', { class: 'card', 'aria-labelledby': 'log-title' },
      h('h2', { id: 'log-title' }, 'Deliveries'),
      filter,
      table([
        ['Event', (d) => h('span', { class: 'mono', title: d.event_id }, shortId(d.event_id))],
        ['Type', (d) => h('code', {}, d.event_type)],
        ['Status', (d) => badge(d.status)],
        ['Attempts', attemptsList],
        ['Last attempt', lastAttempt],
        ['Next attempt', (d) => (d.next_attempt_ms ? when(Math.floor(d.next_attempt_ms / 1000)) : '—')],
        ['', redeliver],
      ], log.data, { empty: 'No delivery yet.' }),
      h('div', { class: 'pager' },
        before ? h('a', { href: here({}) }, '« Newest') : null,
        log.has_more && log.data.length ? h('a', { href: here({ before: log.data[log.data.length - 1].id }) }, 'Older »') : null)));
}
