// Reports: transactions over a chosen period, grouped by day, kind, status or device,
// as a chart and a table, and exported as CSV (the rows, or the table's totals).

import { get, query } from './api.js';
import { h, mount, money, dayIn, table, field, select, pageHeader } from './ui.js';
import { barChart } from './chart.js';

const GROUPS = [['day', 'Day'], ['kind', 'Kind'], ['status', 'Status'], ['device', 'Device']];
const KEY = { day: 'day', kind: 'kind', status: 'status', device: 'device_id' };
const KINDS = ['payment', 'capture', 'void', 'refund', 'adjustment'];

export async function renderReports(view, ctx) {
  // The default period is the last 30 days of the client's time zone, whose days the
  // report's dates are.
  const client = ctx.user.client_id ? await get(`/v1/clients/${ctx.user.client_id}`) : null;
  const zone = client ? client.time_zone : 'UTC';
  const params = {
    from: ctx.query.get('from') || dayIn(zone, -29),
    to: ctx.query.get('to') || dayIn(zone, 0),
    group_by: ctx.query.get('group_by') || 'day',
    currency: ctx.query.get('currency') || '',
    kind: ctx.query.get('kind') || '',
  };
  const filter = { from: params.from, to: params.to, currency: params.currency, kind: params.kind };
  const [report, devices] = await Promise.all([
    get(`/v1/reports/transactions${query({ ...filter, rows: 'false' })}`),
    params.group_by === 'device' ? get('/v1/devices?limit=100') : { data: [] },
  ]);
  const serial = new Map(devices.data.map((d) => [d.id, d.serial]));
  const groups = report.totals[`by_${params.group_by}`] || [];
  const key = KEY[params.group_by];
  const label = (g) => (g[key] === null ? 'no device' : params.group_by === 'device' ? serial.get(g[key]) || `#${g[key]}` : String(g[key]));

  const form = h('form', { class: 'card', 'aria-label': 'Report settings' },
    h('div', { class: 'row' },
      field('From', h('input', { name: 'from', type: 'date', value: params.from, required: true })),
      field('To (inclusive)', h('input', { name: 'to', type: 'date', value: params.to, required: true })),
      field('Group by', select('group_by', GROUPS, params.group_by)),
      field('Kind', select('kind', [['', 'Any'], ...KINDS.map((k) => [k, k])], params.kind)),
      field('Currency', h('input', { name: 'currency', value: params.currency, size: 4, maxlength: 3, placeholder: 'any', autocapitalize: 'characters' })),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Show'))));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form).entries());
    if (values.currency) values.currency = values.currency.toUpperCase();
    ctx.navigate(`#/reports${query(values)}`);
  });

  const currencies = [...new Set(groups.map((g) => g.currency))].sort();
  const chartBox = h('div', {});
  const draw = (currency) => mount(chartBox, barChart(`Net by ${params.group_by}, ${currency}`,
    groups.filter((g) => g.currency === currency).map((g) => ({ label: label(g), value: g.net })), currency));
  let chooser = null;
  if (currencies.length) {
    chooser = select('chart_currency', currencies.map((c) => [c, c]), currencies[0], { 'aria-label': 'Currency of the chart' });
    chooser.addEventListener('change', () => draw(chooser.value));
    draw(currencies[0]);
  }
  const csvRows = `/v1/reports/transactions${query({ ...filter, format: 'csv' })}`;
  const csvTotals = `/v1/reports/transactions${query({ ...filter, format: 'csv', group_by: params.group_by })}`;

  mount(view,
    pageHeader('Reports',
      h('a', { href: csvRows, download: '', class: 'button', id: 'export-csv' }, 'Export transactions (CSV)'),
      h('a', { href: csvTotals, download: '', id: 'export-totals-csv' }, 'Export this table (CSV)')),
    form,
    h('section', { class: 'card', 'aria-labelledby': 'report-chart-title' },
      h('div', { class: 'spread' },
        h('h2', { id: 'report-chart-title' }, `Net by ${params.group_by}, ${params.from} to ${params.to} (UTC)`), chooser),
      currencies.length ? chartBox : h('p', { class: 'empty' }, 'No transactions in this period.'),
      h('p', { class: 'muted' }, `${report.count} transactions.`)),
    h('section', { class: 'card', 'aria-label': 'Totals' },
      table([
        [GROUPS.find(([g]) => g === params.group_by)[1], label],
        ['Currency', (g) => g.currency],
        ['Count', (g) => String(g.count), { num: true }],
        ['Captured', (g) => money(g.captured, g.currency), { num: true }],
        ['Refunded', (g) => money(g.refunded, g.currency), { num: true }],
        ['Adjusted', (g) => money(g.adjusted, g.currency), { num: true }],
        ['Net', (g) => money(g.net, g.currency), { num: true }],
      ], groups, { empty: 'No transactions in this period.' })));
}
