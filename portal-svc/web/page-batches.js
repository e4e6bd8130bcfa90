// Batches: the open batch of each currency (closing it, for operators and up), the
// closed ones, and a batch's reconciliation against its transactions.

import { get, post, query } from './api.js';
import { h, mount, can, money, when, badge, table, confirmDialog, flash, pageHeader, errorBox } from './ui.js';

const summaryColumns = [
  ['Batch', (b) => h('a', { href: `#/batches/${b.id}` }, `#${b.id}`)],
  ['Currency', (b) => b.currency],
  ['Status', (b) => badge(b.status)],
  ['Payments', (b) => `${b.payment_count} · ${money(b.payment_total, b.currency)}`, { num: true }],
  ['Refunds', (b) => `${b.refund_count} · ${money(b.refund_total, b.currency)}`, { num: true }],
  ['Adjustments', (b) => `${b.adjustment_count} · ${money(b.adjustment_total, b.currency)}`, { num: true }],
  ['Net', (b) => money(b.net, b.currency), { num: true }],
  ['Opened', (b) => when(b.opened_at)],
];

export async function renderBatches(view, ctx) {
  const after = ctx.query.get('after') || '';
  const [open, closed] = await Promise.all([
    get('/v1/batches?status=open'),
    get(`/v1/batches${query({ status: 'closed', limit: 50, starting_after: after })}`),
  ]);
  const closeCell = (b) => {
    if (!can(ctx.user, 'operator')) return '';
    const empty = b.payment_count + b.refund_count + b.adjustment_count === 0;
    const button = h('button', { type: 'button', class: 'primary', disabled: empty, 'aria-label': `Close the ${b.currency} batch` }, 'Close batch…');
    button.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: `Close the ${b.currency} batch?`,
        confirm: 'Close batch',
        body: h('p', {}, `${b.payment_count} payments (${money(b.payment_total, b.currency)}), ${b.refund_count} refunds (${money(b.refund_total, b.currency)}), net ${money(b.net, b.currency)}. New transactions go into a new batch.`),
      });
      if (!ok) return;
      button.disabled = true;
      try {
        const batch = await post('/v1/batches/close', { currency: b.currency });
        flash(`Batch #${batch.id} closed: net ${money(batch.net, batch.currency)}.`);
        ctx.refresh();
      } catch (error) {
        button.disabled = false;
        flash(`${error.message} (${error.code})`, 'error');
      }
    });
    return button;
  };
  const here = (extra) => `#/batches${query(extra)}`;
  mount(view,
    pageHeader('Batches'),
    h('section', { class: 'card', 'aria-labelledby': 'open-title' },
      h('h2', { id: 'open-title' }, 'Open'),
      table([...summaryColumns.filter(([name]) => name !== 'Status'), ['', closeCell]], open.data, { empty: 'No open batch: nothing to settle.' })),
    h('section', { class: 'card', 'aria-labelledby': 'closed-title' },
      h('h2', { id: 'closed-title' }, 'Closed'),
      table([...summaryColumns, ['Closed', (b) => when(b.closed_at)]], closed.data, { empty: 'No batch closed yet.' }),
      h('div', { class: 'pager' },
        after ? h('a', { href: here({}) }, '« First page') : null,
        closed.has_more && closed.next_starting_after ? h('a', { href: here({ after: closed.next_starting_after }) }, 'Next page »') : null,
        h('span', { class: 'muted' }, 'Oldest first'))));
}

export async function renderBatch(view, ctx) {
  const [id] = ctx.params;
  const rec = await get(`/v1/batches/${id}/reconciliation`);
  const b = rec.batch;
  const t = rec.transactions;
  const line = (label, batchValue, txValue) => ({ label, batchValue, txValue });
  const rows = [
    line('Payments (count)', String(b.payment_count), String(t.payment_count)),
    line('Payments (total)', money(b.payment_total, b.currency), money(t.payment_total, b.currency)),
    line('Refunds (count)', String(b.refund_count), String(t.refund_count)),
    line('Refunds (total)', money(b.refund_total, b.currency), money(t.refund_total, b.currency)),
    line('Adjustments (count)', String(b.adjustment_count), String(t.adjustment_count)),
    line('Adjustments (total)', money(b.adjustment_total, b.currency), money(t.adjustment_total, b.currency)),
    line('Net', money(b.net, b.currency), money(t.net, b.currency)),
  ];
  mount(view,
    pageHeader(`Batch #${b.id} (${b.currency})`, badge(b.status)),
    h('section', { class: 'card' },
      h('dl', { class: 'facts' },
        h('dt', {}, 'Opened'), h('dd', {}, when(b.opened_at)),
        h('dt', {}, 'Closed'), h('dd', {}, b.closed_at ? when(b.closed_at) : 'still open'),
        h('dt', {}, 'Ledger sequence'), h('dd', {}, `${b.first_seq} – ${b.last_seq}`),
        h('dt', {}, 'Transactions'), h('dd', {}, h('a', { href: `#/transactions${query({ currency: b.currency })}` }, `${b.currency} transactions`)))),
    h('section', { class: 'card', 'aria-labelledby': 'rec-title' },
      h('div', { class: 'spread' },
        h('h2', { id: 'rec-title' }, 'Reconciliation'),
        h('span', { id: 'reconciliation-result' }, rec.matches ? badge('matches') : badge('mismatch'))),
      h('p', { class: 'muted' }, 'The batch\'s totals against the sum of the transactions that count in it, recomputed from the ledger.'),
      table([
        ['', (r) => r.label],
        ['Batch', (r) => r.batchValue, { num: true }],
        ['Transactions', (r) => r.txValue, { num: true }],
        ['', (r) => (r.batchValue === r.txValue ? '✓' : h('strong', { class: 'error' }, 'differs'))],
      ], rows)),
    rec.matches ? null : errorBox(new Error('This batch does not reconcile: report it to support.')));
}
