// The dashboard: today's volume, refunds and net per currency, volume by day over two
// weeks, the open batches, and the devices that stopped reporting.

import { get, query } from './api.js';
import { h, mount, money, sum, subtract, dayIn, when, table, badge, select } from './ui.js';
import { barChart } from './chart.js';

const DAYS = 14;

/** Totals by (day, currency) of a report over the last DAYS days of the client's zone. */
async function byDay(kind, zone) {
  const report = await get(`/v1/reports/transactions${query({ from: dayIn(zone, 1 - DAYS), to: dayIn(zone, 0), rows: 'false', kind })}`);
  const map = new Map();
  for (const t of report.totals.by_day) map.set(`${t.day} ${t.currency}`, t);
  return map;
}

export async function renderDashboard(view, ctx) {
  // The days are the client's (its time zone, daylight saving included), as the
  // report's totals by day are.
  const client = ctx && ctx.user.client_id ? await get(`/v1/clients/${ctx.user.client_id}`) : null;
  const zone = client ? client.time_zone : 'UTC';
  const [sales, captures, refunds, all, open, offline] = await Promise.all([
    byDay('payment', zone), byDay('capture', zone), byDay('refund', zone), byDay(undefined, zone),
    get('/v1/batches?status=open'), get('/v1/devices?status=offline&limit=100'),
  ]);
  const days = Array.from({ length: DAYS }, (_, i) => dayIn(zone, i + 1 - DAYS));
  const currencies = [...new Set([...all.keys()].map((k) => k.split(' ')[1]))].sort();
  // Volume is what came in: sales (captured payments) and captures of authorizations.
  // A currency's zero with its minor digits ("0.00"), from any amount seen in it.
  const zero = new Map([...all.values()].map((t) => [t.currency, subtract(t.net, t.net)]));
  const figure = (map, key, field) => {
    const currency = key.split(' ')[1];
    return sum([zero.get(currency) || '0', map.get(key) ? map.get(key)[field] : '0']);
  };
  const volume = (day, currency) => {
    const key = `${day} ${currency}`;
    return sum([figure(sales, key, 'net'), figure(captures, key, 'net')]);
  };
  const today = dayIn(zone, 0);

  const cards = currencies.length
    ? currencies.map((c) => {
      const key = `${today} ${c}`;
      const count = all.get(key) ? all.get(key).count : 0;
      return h('section', { class: 'card', 'aria-label': `Today in ${c}` },
        h('h2', {}, `Today, ${c}`),
        h('div', { class: 'grid' },
          stat('Volume', money(volume(today, c), c), `${count} transactions`, 'today-volume'),
          stat('Refunds', money(figure(refunds, key, 'refunded'), c), null, 'today-refunds'),
          stat('Net', money(figure(all, key, 'net'), c), null, 'today-net')));
    })
    : [h('section', { class: 'card' }, h('h2', {}, 'Today'), h('p', { class: 'empty' }, 'No transactions in the last two weeks.'))];

  const chartBox = h('div', {});
  const drawChart = (currency) => mount(chartBox, barChart(`Volume by day, ${currency}`,
    days.map((d) => ({ label: d, value: volume(d, currency) })), currency));
  let chooser = null;
  if (currencies.length) {
    chooser = select('currency', currencies.map((c) => [c, c]), currencies[0], { 'aria-label': 'Currency of the chart' });
    chooser.addEventListener('change', () => drawChart(chooser.value));
    drawChart(currencies[0]);
  }

  const offlineCount = offline.has_more ? `${offline.data.length}+` : String(offline.data.length);
  mount(view,
    h('h1', {}, 'Dashboard'),
    cards,
    h('section', { class: 'card', 'aria-labelledby': 'chart-title' },
      h('div', { class: 'spread' }, h('h2', { id: 'chart-title' }, `Volume by day, last ${DAYS} days (${zone})`), chooser),
      currencies.length ? chartBox : h('p', { class: 'empty' }, 'No data for this period.')),
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'open-title' },
        h('h2', { id: 'open-title' }, 'Open batches'),
        table([
          ['Currency', (b) => h('a', { href: `#/batches/${b.id}` }, b.currency)],
          ['Payments', (b) => `${b.payment_count} · ${money(b.payment_total, b.currency)}`, { num: true }],
          ['Refunds', (b) => `${b.refund_count} · ${money(b.refund_total, b.currency)}`, { num: true }],
          ['Net', (b) => money(b.net, b.currency), { num: true }],
        ], open.data, { empty: 'No open batch.' }),
        h('p', {}, h('a', { href: '#/batches' }, 'All batches'))),
      h('section', { class: 'card', 'aria-labelledby': 'offline-title' },
        h('h2', { id: 'offline-title' }, 'Devices offline'),
        h('div', { class: 'stat' }, h('div', { class: 'value', id: 'offline-count' }, offlineCount)),
        table([
          ['Device', (d) => h('a', { href: `#/devices/${d.id}` }, d.serial)],
          ['Status', (d) => badge(d.status)],
          ['Last seen', (d) => (d.last_seen ? when(d.last_seen) : 'never')],
        ], offline.data.slice(0, 5), { empty: 'Every device is reporting.' }),
        h('p', {}, h('a', { href: '#/devices?status=offline' }, 'All offline devices')))));
}

function stat(label, value, sub, id) {
  return h('div', { class: 'stat' },
    h('div', { class: 'label' }, label), h('div', { class: 'value', dataset: { stat: id } }, value),
    sub ? h('div', { class: 'sub' }, sub) : null);
}
