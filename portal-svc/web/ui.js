// Small building blocks shared by the pages: DOM construction that never parses
// HTML (text is always text, so nothing the API returns can become markup), money
// and time formatting, messages, confirmation dialogs and form helpers.

import { ApiError, followEvents } from './api.js';

/** Builds an element: `h('a', {href: '#/x', class: 'c', on: {click}}, 'text', child)`. */
export function h(tag, props, ...children) {
  const svg = tag.startsWith('svg:');
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'on') {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else if (key === 'class') {
      el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (!svg && (key === 'value' || key === 'checked' || key === 'disabled')) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ---------------------------------------------------------------------------------
// Roles: what the signed-in user may do (the API enforces it; the pages only hide
// what would be refused).

const RANK = { viewer: 1, operator: 2, client_admin: 3, admin: 4 };

/** Whether `user` has at least `role` within a client (platform admins have none). */
export function can(user, role) {
  return Boolean(user && user.client_id !== null && RANK[user.role] >= RANK[role]);
}

export const isPlatformAdmin = (user) => Boolean(user && user.role === 'admin');

export const ROLE_NAMES = { admin: 'Platform admin', client_admin: 'Client admin', operator: 'Operator', viewer: 'Viewer' };

// ---------------------------------------------------------------------------------
// Formatting

/** `"12.50"` and `"USD"` as `12.50 USD`; amounts are decimal strings, never floats. */
export function money(amount, currency) {
  if (amount === null || amount === undefined) return '—';
  return currency ? `${amount} ${currency}` : String(amount);
}

/** Decimal string -> {units: BigInt, scale} (exact). */
export function toMinor(text) {
  const negative = text.startsWith('-');
  const [whole, fraction = ''] = text.replace(/^[-+]/, '').split('.');
  const units = BigInt(whole + fraction || '0');
  return { units: negative ? -units : units, scale: fraction.length };
}

/** {units, scale} -> decimal string with `scale` fraction digits. */
export function fromMinor(units, scale) {
  const negative = units < 0n;
  const digits = (negative ? -units : units).toString().padStart(scale + 1, '0');
  const text = scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
  return negative ? `-${text}` : text;
}

/** a - b for decimal strings of the same currency. */
export function subtract(a, b) {
  const x = toMinor(a);
  const y = toMinor(b);
  const scale = Math.max(x.scale, y.scale);
  const lift = (m) => m.units * 10n ** BigInt(scale - m.scale);
  return fromMinor(lift(x) - lift(y), scale);
}

/** Sum of decimal strings (exact). */
export function sum(amounts) {
  let total = { units: 0n, scale: 0 };
  for (const a of amounts) {
    const m = toMinor(a);
    const scale = Math.max(total.scale, m.scale);
    total = {
      units: total.units * 10n ** BigInt(scale - total.scale) + m.units * 10n ** BigInt(scale - m.scale),
      scale,
    };
  }
  return fromMinor(total.units, total.scale);
}

/** Unix seconds as a local date and time, with the zone it is in (`CET`, `GMT+1`). */
export function when(secs) {
  if (secs === null || secs === undefined) return '—';
  const d = new Date(secs * 1000);
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', timeZoneName: 'short' });
}

/**
 * The date (YYYY-MM-DD) `days` after today in a client's time zone: an IANA name
 * (`Europe/Paris`, daylight saving included) or a fixed offset (`+05:30`); UTC
 * without one. Days are counted on the calendar, so a 23- or 25-hour day between
 * is still one day.
 */
export function dayIn(zone, days = 0) {
  const now = new Date();
  let today = now.toISOString().slice(0, 10);
  const offset = /^([+-])([0-9]{2}):([0-9]{2})$/.exec(zone || '');
  if (offset) {
    const minutes = (offset[1] === '-' ? -1 : 1) * (Number(offset[2]) * 60 + Number(offset[3]));
    today = new Date(now.getTime() + minutes * 60000).toISOString().slice(0, 10);
  } else if (zone) {
    try {
      const parts = new Intl.DateTimeFormat('en-US', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' }).formatToParts(now);
      const part = (type) => parts.find((p) => p.type === type).value;
      today = `${part('year')}-${part('month')}-${part('day')}`;
    } catch (e) {
      // A zone this browser does not know: UTC days.
    }
  }
  const d = new Date(`${today}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

/** Time zones offered for a client's settings (any other IANA name may be typed). */
export const COMMON_TIME_ZONES = [
  'UTC', 'Europe/London', 'Europe/Dublin', 'Europe/Lisbon', 'Europe/Paris', 'Europe/Berlin', 'Europe/Madrid',
  'Europe/Rome', 'Europe/Amsterdam', 'Europe/Brussels', 'Europe/Zurich', 'Europe/Stockholm', 'Europe/Warsaw',
  'Europe/Athens', 'Europe/Helsinki', 'Europe/Istanbul', 'Europe/Moscow', 'Africa/Cairo', 'Africa/Johannesburg',
  'Africa/Lagos', 'Africa/Nairobi', 'Asia/Dubai', 'Asia/Karachi', 'Asia/Kolkata', 'Asia/Dhaka', 'Asia/Bangkok',
  'Asia/Jakarta', 'Asia/Singapore', 'Asia/Hong_Kong', 'Asia/Shanghai', 'Asia/Taipei', 'Asia/Seoul', 'Asia/Tokyo',
  'Australia/Perth', 'Australia/Adelaide', 'Australia/Sydney', 'Pacific/Auckland', 'Pacific/Honolulu',
  'America/Anchorage', 'America/Los_Angeles', 'America/Denver', 'America/Phoenix', 'America/Chicago',
  'America/Mexico_City', 'America/New_York', 'America/Toronto', 'America/Bogota', 'America/Lima',
  'America/Santiago', 'America/Halifax', 'America/Sao_Paulo', 'America/Argentina/Buenos_Aires',
];

const BADGES = {
  captured: 'good', applied: 'good', matches: 'good', mismatch: 'bad', on: 'good', active: 'good', revoked: 'bad', online: 'good', completed: 'good', installed: 'good', resolved: 'good', closed: 'info',
  authorized: 'info', open: 'info', in_progress: 'info', waiting: 'warn', pending: 'warn',
  partially_refunded: 'warn', refunded: 'warn', voided: 'bad', offline: 'bad', failed: 'bad', cancelled: 'bad',
  ok: 'good', refused: 'warn', deactivated: 'bad', succeeded: 'good', disabled: 'bad', locked: 'bad', password_change: 'warn',
};

/** A status as a badge (the word itself, so colour is never the only signal). */
export function badge(status) {
  return h('span', { class: ['badge', BADGES[status]] }, String(status).replace(/_/g, ' '));
}

export function shortId(id) {
  const text = String(id);
  return text.length > 14 ? `${text.slice(0, 9)}…${text.slice(-4)}` : text;
}

// ---------------------------------------------------------------------------------
// Messages

/** A message at the top of the page (announced to screen readers). */
export function flash(message, kind = 'ok') {
  const area = document.getElementById('flash');
  const close = h('button', { type: 'button', 'aria-label': 'Dismiss' }, '×');
  const box = h('div', { class: ['flash', kind], role: kind === 'error' ? 'alert' : null }, h('span', {}, message), close);
  close.addEventListener('click', () => box.remove());
  area.replaceChildren(box);
  if (kind === 'ok') setTimeout(() => box.remove(), 6000);
}

export function clearFlash() {
  document.getElementById('flash').replaceChildren();
}

/** A readable box for an API error: its message, and its code for support. */
export function errorBox(error) {
  const code = error instanceof ApiError ? h('span', { class: 'code' }, `(${error.code})`) : null;
  return h('div', { class: 'error-box', role: 'alert' },
    h('strong', {}, (error && error.message) || 'Something went wrong.'), ' ', code);
}

/** Shows the error inside `form`: the message above the fields, the named field
 *  marked invalid and focused. */
export function showFormError(form, error) {
  clearFormError(form);
  const box = errorBox(error);
  box.classList.add('form-error');
  form.prepend(box);
  const param = error instanceof ApiError ? error.param : null;
  const field = param && form.querySelector(`[name="${CSS.escape(param)}"]`);
  if (field) {
    field.setAttribute('aria-invalid', 'true');
    field.focus();
  } else {
    box.setAttribute('tabindex', '-1');
    box.focus();
  }
}

export function clearFormError(form) {
  form.querySelectorAll('.form-error').forEach((e) => e.remove());
  form.querySelectorAll('[aria-invalid]').forEach((e) => e.removeAttribute('aria-invalid'));
}

/** Wires `form`'s submit to `action(values)`: disables the submit button meanwhile,
 *  shows an API error inside the form; `action`'s result is returned to `done`. */
export function onSubmit(form, action, done) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = form.querySelector('button[type="submit"]');
    if (button) button.disabled = true;
    clearFormError(form);
    try {
      const values = Object.fromEntries(new FormData(form).entries());
      const result = await action(values);
      if (done) await done(result);
    } catch (error) {
      if (!form.isConnected) return;
      showFormError(form, error);
    } finally {
      if (button) button.disabled = false;
    }
  });
  return form;
}

/** A labelled field. */
export function field(label, input, help) {
  return h('label', {}, label, input, help ? h('span', { class: 'field-help' }, help) : null);
}

export function select(name, options, selected, props = {}) {
  return h('select', { name, ...props },
    options.map(([value, text]) => h('option', { value, selected: String(value) === String(selected ?? '') }, text)));
}

/** Asks for confirmation in a modal dialog (Esc or Cancel says no). */
export function confirmDialog({ title, body, confirm = 'Confirm', danger = false }) {
  return new Promise((resolve) => {
    const yes = h('button', { type: 'submit', class: danger ? 'danger' : 'primary', value: 'yes' }, confirm);
    const no = h('button', { type: 'button' }, 'Cancel');
    const dialog = h('dialog', { 'aria-labelledby': 'dialog-title' },
      h('form', { method: 'dialog' },
        h('h2', { id: 'dialog-title' }, title),
        h('div', {}, body),
        h('div', { class: 'actions' }, yes, no)));
    no.addEventListener('click', () => dialog.close('no'));
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'yes');
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
    yes.focus();
  });
}

/** A table: `columns` are [heading, cell(row), {num}] triples. */
export function table(columns, rows, { empty = 'Nothing here yet.', caption } = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'table-wrap' },
    h('table', {},
      caption ? h('caption', { class: 'muted' }, caption) : null,
      h('thead', {}, h('tr', {}, columns.map(([heading, , opts]) =>
        h('th', { scope: 'col', class: opts && opts.num ? 'num' : null }, heading)))),
      h('tbody', {}, rows.map((row) => h('tr', {}, columns.map(([, cell, opts]) =>
        h('td', { class: opts && opts.num ? 'num' : null }, cell(row))))))));
}

/** A heading row with optional actions on the right. */
export function pageHeader(title, ...actions) {
  return h('div', { class: 'spread' }, h('h1', {}, title), h('div', { class: 'actions' }, actions));
}

/** Renders `load()` into `el`: a loading line, then the result or a readable error. */
export async function section(el, load) {
  mount(el, h('p', { class: 'loading' }, 'Loading…'));
  try {
    mount(el, await load());
  } catch (error) {
    mount(el, errorBox(error));
  }
}

/** Keeps a page live: when an event of `types` arrives (the event stream), the page is
 *  rendered again shortly after, unless the user is typing in it or `quiet` says
 *  so (a later page of a list): then the returned notice offers to. */
export function liveUpdates(ctx, types, { quiet = false, message = 'There is new activity.' } = {}) {
  const show = h('button', { type: 'button', class: 'link' }, 'Show it');
  show.addEventListener('click', () => ctx.refresh());
  const notice = h('p', { class: 'live-notice', role: 'status', hidden: true }, message, ' ', show);
  let timer = null;
  const stop = followEvents(types, () => {
    if (!ctx.current()) return;
    const typing = document.activeElement && document.activeElement.closest('form');
    if (quiet || typing) {
      notice.hidden = false;
      return;
    }
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (ctx.current() && !document.hidden) ctx.refresh();
      else notice.hidden = false;
    }, 700);
  });
  ctx.onLeave(() => {
    stop();
    clearTimeout(timer);
  });
  return notice;
}
