// The signed-in user's account: who they are, their password (the current one needed;
// every other session ends), and two-factor sign-in (TOTP) with a QR code to scan and
// recovery codes to keep. A session that must first change a temporary password or
// enrol in two-factor sign-in is sent here, and told why.

import { get, post } from './api.js';
import { h, mount, field, onSubmit, badge, ROLE_NAMES, flash, errorBox } from './ui.js';

const REASONS = {
  password_change: 'An administrator set a temporary password: choose your own to continue.',
  mfa_enrollment: 'Your organisation requires two-factor sign-in: set it up to continue.',
};

export async function renderAccount(view, ctx) {
  const me = await get('/v1/users/me');
  const mfa = h('section', { class: 'card', 'aria-labelledby': 'mfa-title' });
  mount(view,
    h('h1', {}, 'Account'),
    ctx.restriction ? h('p', { class: 'notice', role: 'alert', id: 'restriction' }, REASONS[ctx.restriction] || ctx.restriction) : null,
    h('section', { class: 'card' },
      h('dl', { class: 'facts' },
        h('dt', {}, 'Email'), h('dd', {}, me.email),
        h('dt', {}, 'Role'), h('dd', {}, ROLE_NAMES[me.role] || me.role),
        h('dt', {}, 'Client'), h('dd', {}, me.client_id === null ? 'none (platform)' : `#${me.client_id}`))),
    passwordSection(ctx),
    ctx.restriction === 'password_change' ? null : mfa);
  showMfa(mfa, me, ctx);
}

function passwordSection(ctx) {
  const form = h('form', { class: 'stack', 'aria-labelledby': 'password-title' },
    h('h2', { id: 'password-title' }, 'Password'),
    field('Current password', h('input', { name: 'current_password', type: 'password', required: true, autocomplete: 'current-password' })),
    field('New password', h('input', { name: 'new_password', type: 'password', required: true, minlength: 12, autocomplete: 'new-password' }), 'At least 12 characters, not a common one. Your other sessions end.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Change password')));
  onSubmit(form, (v) => post('/v1/users/me/password', { current_password: v.current_password, new_password: v.new_password }), async () => {
    form.reset();
    flash('Your password is changed; your other sessions have ended.');
    if (ctx.restriction) await ctx.lifted(true);
  });
  return h('section', { class: 'card' }, form);
}

function showMfa(panel, me, ctx) {
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
      enrol(panel, title, await post('/v1/users/me/mfa', {}), ctx);
    } catch (error) {
      mount(status, errorBox(error));
      start.disabled = false;
    }
  });
}

function enrol(panel, title, enrolment, ctx) {
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
  onSubmit(form, (values) => post('/v1/users/me/mfa/verify', { otp: values.otp.trim() }), async () => {
    mount(panel, title, h('p', {}, badge('on'), ' Two-factor sign-in is on. Keep your recovery codes somewhere safe.'));
    flash('Two-factor sign-in is on.');
    if (ctx && ctx.restriction) await ctx.lifted(false);
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
