// The signed-in user's account: who they are, and two-factor sign-in (TOTP) with a QR
// code to scan and recovery codes to keep.

import { get, post } from './api.js';
import { h, mount, field, onSubmit, badge, ROLE_NAMES, flash, errorBox } from './ui.js';

export async function renderAccount(view, ctx) {
  const me = await get('/v1/users/me');
  const mfa = h('section', { class: 'card', 'aria-labelledby': 'mfa-title' });
  mount(view,
    h('h1', {}, 'Account'),
    h('section', { class: 'card' },
      h('dl', { class: 'facts' },
        h('dt', {}, 'Email'), h('dd', {}, me.email),
        h('dt', {}, 'Role'), h('dd', {}, ROLE_NAMES[me.role] || me.role),
        h('dt', {}, 'Client'), h('dd', {}, me.client_id === null ? 'none (platform)' : `#${me.client_id}`))),
    mfa);
  showMfa(mfa, me, ctx);
}

function showMfa(panel, me) {
  const title = h('h2', { id: 'mfa-title' }, 'Two-factor sign-in');
  if (me.mfa_enabled) {
    mount(panel, title, h('p', {}, badge('on'), ' Signing in asks for a code from your authenticator app.'));
    return;
  }
  const start = h('button', { type: 'button', class: 'primary' }, 'Set up two-factor sign-in');
  const status = h('div', {});
  mount(panel, title,
    h('p', {}, 'Off. With it on, signing in also asks for a 6-digit code from an authenticator app.'),
    start, status);
  start.addEventListener('click', async () => {
    start.disabled = true;
    try {
      enrol(panel, title, await post('/v1/users/me/mfa', {}));
    } catch (error) {
      mount(status, errorBox(error));
      start.disabled = false;
    }
  });
}

function enrol(panel, title, enrolment) {
  // The QR code is an SVG drawn by the service, shown as an image: it runs nothing.
  const qr = h('img', {
    src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(enrolment.qr_svg)}`,
    alt: 'QR code of the authenticator set-up link', width: 220, height: 220,
  });
  const code = h('input', {
    name: 'otp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: 6, required: true,
  });
  const form = h('form', { class: 'stack' },
    field('Code from the app', code, 'Scan the code, then enter the 6 digits the app shows.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Turn on')));
  onSubmit(form, (values) => post('/v1/users/me/mfa/verify', { otp: values.otp.trim() }), () => {
    mount(panel, title, h('p', {}, badge('on'), ' Two-factor sign-in is on. Keep your recovery codes somewhere safe.'));
    flash('Two-factor sign-in is on.');
  });
  mount(panel, title,
    h('div', { class: 'grid' },
      h('div', { class: 'qr' }, qr),
      h('div', {},
        h('p', {}, 'Scan with an authenticator app, or type the key:'),
        h('p', {}, h('code', { id: 'mfa-secret' }, enrolment.secret)),
        h('p', {}, 'Recovery codes (each works once, if you lose the app):'),
        h('ol', { class: 'codes', id: 'recovery-codes' }, enrolment.recovery_codes.map((c) => h('li', {}, c))))),
    form);
  code.focus();
}
