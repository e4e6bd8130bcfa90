// Transactions: a filtered, paginated list, and a transaction's page with its history
// (captures, voids, refunds), its notes, and the actions the user's role allows, each
// confirmed first and sent with an Idempotency-Key so it moves money at most once.

import { get, post, query, idempotencyKey } from './api.js';
import { h, mount, can, money, when, badge, shortId, table, field, select, onSubmit, confirmDialog, subtract, flash, pageHeader, liveUpdates } from './ui.js';
import { notesPanel } from './notes.js';

const STATUSES = ['authorized', 'captured', 'partially_refunded', 'refunded', 'voided', 'applied'];
const KINDS = ['payment', 'capture', 'void', 'refund', 'adjustment'];
const FILTERS = ['status', 'kind', 'device_id', 'currency', 'from', 'to', 'amount_min', 'amount_max'];

export async function renderTransactions(view, ctx) {
  const filters = Object.fromEntries(FILTERS.map((f) => [f, ctx.query.get(f) || '']));
  const after = ctx.query.get('after') || '';
  const [page, devices] = await Promise.all([
    get(`/v1/transactions${query({ ...filters, limit: 50, starting_after: after })}`),
    get('/v1/devices?limit=100'),
  ]);

  const form = h('form', { class: 'card', 'aria-label': 'Filter transactions' },
    h('div', { class: 'row' },
      field('Status', select('status', [['', 'Any'], ...STATUSES.map((s) => [s, s.replace('_', ' ')])], filters.status)),
      field('Kind', select('kind', [['', 'Any'], ...KINDS.map((k) => [k, k])], filters.kind)),
      field('Device', select('device_id', [['', 'Any'], ...devices.data.map((d) => [d.id, d.serial])], filters.device_id)),
      field('Currency', h('input', { name: 'currency', value: filters.currency, size: 4, maxlength: 3, pattern: '[A-Z]{3}', placeholder: 'USD', autocapitalize: 'characters' })),
      field('From', h('input', { name: 'from', type: 'date', value: filters.from })),
      field('To', h('input', { name: 'to', type: 'date', value: filters.to })),
      field('Min amount', h('input', { name: 'amount_min', inputmode: 'decimal', value: filters.amount_min, size: 8 })),
      field('Max amount', h('input', { name: 'amount_max', inputmode: 'decimal', value: filters.amount_max, size: 8 })),
      h('div', { class: 'actions' },
        h('button', { type: 'submit', class: 'primary' }, 'Filter'),
        h('a', { href: '#/transactions' }, 'Clear'))));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form).entries());
    if (values.currency) values.currency = values.currency.toUpperCase();
    ctx.navigate(`#/transactions${query(values)}`);
  });

  // Find one transaction by its id (from a receipt, a support call, a log line).
  const find = h('form', { class: 'row', role: 'search', 'aria-label': 'Find a transaction' },
    field('Transaction id', h('input', { name: 'id', required: true, pattern: 'tx_[0-9a-f]{32}', placeholder: 'tx_…', size: 38, class: 'mono', autocomplete: 'off' })),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Find')));
  find.addEventListener('submit', (event) => {
    event.preventDefault();
    ctx.navigate(`#/transactions/${encodeURIComponent(new FormData(find).get('id').trim())}`);
  });
  const serial = new Map(devices.data.map((d) => [d.id, d.serial]));
  const here = (extra) => `#/transactions${query({ ...filters, ...extra })}`;
  const pager = h('div', { class: 'pager' },
    after ? h('a', { href: here({}) }, '« First page') : null,
    page.has_more && page.next_starting_after
      ? h('a', { href: here({ after: page.next_starting_after }), rel: 'next' }, 'Next page »')
      : null,
    h('span', { class: 'muted' }, `${page.data.length} shown, oldest first`));

  // New money movements appear by themselves on the first page (the event stream).
  const live = liveUpdates(ctx, ['payment.created', 'payment.captured', 'payment.voided', 'refund.created', 'adjustment.created'],
    { quiet: Boolean(after), message: 'New transactions were made.' });
  mount(view,
    pageHeader('Transactions'),
    live,
    find,
    form,
    h('section', { class: 'card', 'aria-label': 'Transactions' },
      table([
        ['Created', (t) => when(t.created_at)],
        ['Transaction', (t) => h('a', { href: `#/transactions/${t.id}`, class: 'mono', title: t.id }, shortId(t.id))],
        ['Kind', (t) => t.kind],
        ['Status', (t) => badge(t.status)],
        ['Amount', (t) => money(t.amount, t.currency), { num: true }],
        ['Refunded', (t) => (t.kind === 'payment' ? money(t.refunded, t.currency) : ''), { num: true }],
        ['Device', (t) => (t.device_id ? h('a', { href: `#/devices/${t.device_id}` }, serial.get(t.device_id) || `#${t.device_id}`) : '')],
        ['Description', (t) => t.description || ''],
      ], page.data, {
        empty: page.has_more ? 'No match in the part of the history read so far; go on to the next page.' : 'No transaction matches.',
      }),
      pager));
}

export async function renderTransaction(view, ctx) {
  const [id] = ctx.params;
  const [tx, history] = await Promise.all([get(`/v1/transactions/${encodeURIComponent(id)}`), get(`/v1/transactions/${encodeURIComponent(id)}/history`)]);
  const device = tx.device_id ? await get(`/v1/devices/${tx.device_id}`).catch(() => null) : null;
  const payment = history.payment;
  const isRoot = payment && payment.id === tx.id;

  mount(view,
    pageHeader(`${tx.kind[0].toUpperCase()}${tx.kind.slice(1)} of ${money(tx.amount, tx.currency)}`, badge(tx.status)),
    h('section', { class: 'card' },
      h('dl', { class: 'facts' },
        h('dt', {}, 'Id'), h('dd', { class: 'mono' }, tx.id),
        h('dt', {}, 'Status'), h('dd', { id: 'tx-status' }, badge(tx.status)),
        h('dt', {}, 'Amount'), h('dd', {}, money(tx.amount, tx.currency)),
        tx.kind === 'payment' ? [h('dt', {}, 'Captured'), h('dd', {}, money(tx.captured, tx.currency)),
          h('dt', {}, 'Refunded'), h('dd', { id: 'tx-refunded' }, money(tx.refunded, tx.currency))] : null,
        !isRoot && payment ? [h('dt', {}, 'Of payment'), h('dd', {}, h('a', { href: `#/transactions/${payment.id}`, class: 'mono' }, payment.id))] : null,
        h('dt', {}, 'Device'), h('dd', {}, tx.device_id ? h('a', { href: `#/devices/${tx.device_id}` }, device ? device.serial : `#${tx.device_id}`) : '—'),
        h('dt', {}, 'Batch'), h('dd', {}, tx.batch_id ? h('a', { href: `#/batches/${tx.batch_id}` }, `#${tx.batch_id}`) : '—'),
        h('dt', {}, 'Created'), h('dd', {}, when(tx.created_at)),
        h('dt', {}, 'Sequence'), h('dd', {}, String(tx.seq)),
        h('dt', {}, 'Description'), h('dd', {}, tx.description || '—'))),
    isRoot && can(ctx.user, 'operator') ? actions(tx, ctx) : null,
    h('section', { class: 'card', 'aria-labelledby': 'history-title' },
      h('h2', { id: 'history-title' }, 'History'),
      table([
        ['When', (e) => when(e.created_at)],
        ['Kind', (e) => e.kind],
        ['Amount', (e) => money(e.amount, e.currency), { num: true }],
        ['Status', (e) => badge(e.status)],
        ['Transaction', (e) => (e.id === tx.id ? h('span', { class: 'mono' }, `${shortId(e.id)} (this)`) : h('a', { href: `#/transactions/${e.id}`, class: 'mono' }, shortId(e.id)))],
      ], history.events, { empty: 'No history.' })),
    notesPanel(ctx.user, 'transaction', tx.id));
}

/** The capture, void and refund forms this payment's state allows. */
function actions(tx, ctx) {
  const forms = [];
  const act = async (action, body, question) => {
    const ok = await confirmDialog({
      title: question, danger: action !== 'capture', confirm: 'Yes, do it',
      body: h('p', {}, `Payment ${tx.id}: ${money(tx.amount, tx.currency)}, captured ${money(tx.captured, tx.currency)}, refunded ${money(tx.refunded, tx.currency)}. This moves money and cannot be undone.`),
    });
    if (!ok) return null;
    return post(`/v1/transactions/${tx.id}/${action}`, body, { idempotencyKey: idempotencyKey() });
  };
  const after = (verb) => async (result) => {
    if (!result) return;
    flash(`${verb} ${money(result.amount, result.currency)}: ${result.id}`);
    ctx.refresh();
  };
  if (tx.kind === 'payment' && tx.status === 'authorized') {
    const capture = h('form', { class: 'row', 'aria-label': 'Capture' },
      field(`Capture amount (${tx.currency})`, h('input', { name: 'amount', inputmode: 'decimal', value: tx.amount, required: true })),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Capture…')));
    onSubmit(capture, (v) => act('capture', { amount: v.amount.trim() }, `Capture ${money(v.amount.trim(), tx.currency)}?`), after('Captured'));
    const voidForm = h('form', { class: 'row', 'aria-label': 'Void' },
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'danger' }, 'Void…')));
    onSubmit(voidForm, () => act('void', {}, 'Void this authorization?'), after('Voided'));
    forms.push(capture, voidForm);
  }
  if (tx.kind === 'payment' && (tx.status === 'captured' || tx.status === 'partially_refunded')) {
    const remaining = subtract(tx.captured, tx.refunded);
    const refund = h('form', { class: 'row', 'aria-label': 'Refund' },
      field(`Refund amount (${tx.currency})`, h('input', { name: 'amount', inputmode: 'decimal', value: remaining, required: true }),
        `Up to ${money(remaining, tx.currency)}`),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'danger' }, 'Refund…')));
    onSubmit(refund, (v) => act('refunds', { amount: v.amount.trim() }, `Refund ${money(v.amount.trim(), tx.currency)}?`), after('Refunded'));
    forms.push(refund);
  }
  if (!forms.length) return null;
  return h('section', { class: 'card', 'aria-labelledby': 'actions-title' }, h('h2', { id: 'actions-title' }, 'Actions'), forms);
}
